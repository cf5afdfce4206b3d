/**
 * Which node a client command talks to and with which token: flags, then MILL_ADDRESS/MILL_TOKEN,
 * then the local node's data dir (so `mill status` on a node needs no flags).
 * Owns: that resolution. Must not touch: the requests themselves.
 */
import { type ParsedToken, parseToken, TokenError } from "../identity/token.ts";
import { type ClientOptions, type Endpoint, parseEndpoint } from "../node/client.ts";
import { isInitialised, loadConfig, loadToken } from "../node/config.ts";
import { removedMessage } from "../node/removal.ts";
import { errorMessage } from "../shared/errors.ts";
import { resolveDataDir } from "./args.ts";
import { OperationError, UsageError } from "./errors.ts";
import { TOKEN_HINT } from "./failure.ts";

export interface TargetFlags {
  readonly address?: string;
  readonly token?: string;
  readonly "data-dir"?: string;
}

export async function resolveTarget(flags: TargetFlags): Promise<ClientOptions> {
  const address = flags.address || process.env.MILL_ADDRESS;
  const tokenText = flags.token || process.env.MILL_TOKEN;
  const dataDir = resolveDataDir(flags["data-dir"]);
  const local = isInitialised(dataDir);
  // A removed node's saved address and token lead nowhere useful: say what happened instead.
  const removed = !address && local ? removedMessage(dataDir) : undefined;
  if (removed) throw new OperationError(removed);
  if (!address && !local) {
    throw new UsageError(
      `no node to ask: ${dataDir} holds no Mill node`,
      "pass --address HOST:PORT and --token (or MILL_ADDRESS and MILL_TOKEN), or --data-dir",
    );
  }
  const endpoint = address ? parseAddressFlag(address) : await localEndpoint(dataDir);
  const token = tokenText ?? (local ? await loadToken(dataDir) : undefined);
  if (!token) throw new UsageError("no token: pass --token or set MILL_TOKEN", TOKEN_HINT);
  return {
    endpoint,
    token: parseTokenFlag(token),
    ...(address ? {} : { localDataDir: dataDir }),
  };
}

function parseAddressFlag(text: string): Endpoint {
  try {
    return parseEndpoint(text);
  } catch (error) {
    throw new UsageError(errorMessage(error));
  }
}

async function localEndpoint(dataDir: string): Promise<Endpoint> {
  const config = await loadConfig(dataDir);
  return { host: config.advertise, port: config.apiPort };
}

/** A token from a flag or the environment; a malformed one is a usage error naming the typo. */
export function parseTokenFlag(text: string): ParsedToken {
  try {
    return parseToken(text);
  } catch (error) {
    if (!(error instanceof TokenError)) throw error;
    throw new UsageError(error.message, TOKEN_HINT);
  }
}
