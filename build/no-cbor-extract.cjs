// Stands in for cbor-x's optional native accelerator in the bundle. It must export nothing at all:
// cbor-x switches to the native string extractor whenever require("cbor-extract") is truthy.
module.exports = undefined;
