/**
 * Drivers broken on purpose, each the way a real driver could go wrong: subclasses of the
 * production Driver that change one protected step. The simulator's checks must catch every
 * one (scenarios.test.ts), or a silent checker would pass unnoticed.
 * Owns: these test-only subclasses. Must not touch: lib/raft.
 */

import type { RaftRestore } from "../../lib/raft/core.ts";
import { Driver, type DriverIo, type DriverOptions } from "../../lib/raft/driver.ts";
import type { Message, Ready } from "../../lib/raft/types.ts";

/** Sends every message of a Ready (votes, acknowledgements) before its fsync returns. */
export class SendsBeforeSync extends Driver {
  protected override earlyMessages(ready: Ready): readonly Message[] {
    return ready.messages;
  }
}

/** Goes on (sends, applies, answers clients) without waiting for its fsync. */
export class AnswersBeforeSync extends Driver {
  protected override persist(ready: Ready): Promise<void> {
    super.persist(ready).catch(() => {});
    return Promise.resolve();
  }
}

/**
 * Forgets, when it starts, that it is rebuilding a lost log (an older version that does not know
 * the catch-up point would): it votes with the empty log the lost snapshot left it.
 */
export class ForgetsLostLog extends Driver {
  constructor(options: DriverOptions, io: DriverIo, restored: RaftRestore) {
    const { recovering: _, ...hardState } = restored.hardState;
    super(options, io, { ...restored, hardState });
  }
}
