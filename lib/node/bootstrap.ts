/**
 * The first entries of a new cluster, committed by the `init` node once it leads: the cluster's
 * configuration, this node's registration, and the cluster protocol, which is this build's: the
 * only member speaks it (the same rule the watchdog applies, lib/cluster/protocol-gate.ts), so a
 * new cluster never waits for what its own build knows. After they commit, the saved config
 * forgets them, so a restart does not propose them again (the watchdog raises the protocol then).
 * Owns: the `bootstrap` part of node.json. Must not touch: what the entries mean (lib/cluster).
 */
import type { ApplyResult, Command } from "../cluster/commands.ts";
import { protocolRaise, shownBy } from "../cluster/protocol-gate.ts";
import type { ClusterState } from "../cluster/state.ts";
import { type NodeConfig, saveConfig } from "./config.ts";

export class Bootstrap {
  #config: NodeConfig;

  constructor(
    readonly dataDir: string,
    config: NodeConfig,
    readonly propose: (command: Command) => Promise<ApplyResult>,
  ) {
    this.#config = config;
  }

  /** Commits what is left of the bootstrap; true when this call finished it. */
  async finish(state: () => ClusterState): Promise<boolean> {
    const pending = this.#config.bootstrap;
    if (!pending) return false;
    if (!state().cluster) await this.propose(pending.init);
    const registered = await this.propose(pending.register);
    if (!registered.ok) throw new Error(`cannot register this node: ${registered.error}`);
    const self = registered.node?.id;
    const raise =
      self === undefined
        ? undefined
        : protocolRaise(
            state(),
            shownBy(self, () => undefined),
          );
    if (raise) await this.propose(raise);
    const { bootstrap: _, ...rest } = this.#config;
    this.#config = rest;
    await saveConfig(this.dataDir, this.#config);
    return true;
  }
}
