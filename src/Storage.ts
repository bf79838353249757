/**
 * Storage: the durable record of every conversation and of every request's usage, kept after the session store
 * forgets a conversation. The foundation keeps it in memory; PostgreSQL (and PGlite, embedded) implement the same
 * interface.
 */
import { Effect, Layer, type Option } from "effect"
import { ClientError, retryAfter } from "./Domain/Errors.js"
import type { DependencyHealth } from "./Domain/Health.js"
import type { ChatMessage, SessionId } from "./Domain/Session.js"
import type { FinishReason } from "./Generator.js"

export class StorageUnavailable extends ClientError<StorageUnavailable>()(
  "StorageUnavailable",
  503,
  "The conversation store cannot take more writes now",
  retryAfter
) {}

/** One chat turn: the user's message, the reply (possibly cut short) and what it cost. */
export interface TurnRecord {
  readonly requestId: string
  readonly owner: string
  readonly sessionId: SessionId
  readonly model: string
  readonly userMessage: ChatMessage
  readonly reply: ChatMessage
  readonly finishReason: FinishReason
  readonly promptTokens: number
  readonly completionTokens: number
  readonly timeToFirstTokenMs: Option.Option<number>
  readonly durationMs: number
}

export interface StorageShape {
  readonly recordTurn: (turn: TurnRecord) => Effect.Effect<void, StorageUnavailable>
  /** Deletes a conversation's stored transcript; false when this caller has none with that id. */
  readonly deleteConversation: (owner: string, id: SessionId) => Effect.Effect<boolean, StorageUnavailable>
  readonly readiness: Effect.Effect<DependencyHealth>
}

/** Turns kept in process memory: lost on restart, for development and tests. */
export const makeMemoryStorage = () => {
  const turns: Array<TurnRecord> = []
  const storage: StorageShape = {
    recordTurn: (turn) => Effect.sync(() => void turns.push(turn)),
    deleteConversation: (owner, id) =>
      Effect.sync(() => {
        const before = turns.length
        const kept = turns.filter((turn) => !(turn.owner === owner && turn.sessionId === id))
        turns.splice(0, turns.length, ...kept)
        return kept.length < before
      }),
    readiness: Effect.succeed({ status: "embedded", kind: "memory" })
  }
  return { storage, turns: turns as ReadonlyArray<TurnRecord> }
}

export class Storage extends Effect.Service<Storage>()("nexxi/Storage", {
  sync: () => makeMemoryStorage().storage
}) {
  /** Memory storage whose turns a test can read back. */
  static readonly Test = () => {
    const { storage, turns } = makeMemoryStorage()
    return { layer: Layer.succeed(Storage, Storage.make(storage)), turns }
  }
}
