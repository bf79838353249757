/**
 * Sessions in process memory, the embedded default: bounded in count (least recently used evicted first) and in
 * turns per session, forgotten after a TTL of inactivity. Lost on restart and not shared between replicas. Locks
 * live in the same process as their holders, so they need no expiry: a holder cannot crash without them.
 */
import { Clock, Deferred, Effect, FiberId, Option } from "effect"
import type { SessionId, Turn } from "../Domain/Session.js"
import { holdLock, type SessionShape } from "../Session.js"

export interface MemoryLimits {
  readonly ttlMillis: number
  readonly maxSessions: number
  readonly maxTurns: number
  readonly lockTimeoutMillis: number
}

interface StoredSession {
  turns: ReadonlyArray<Turn>
  expiresAt: number
}

interface Holder {
  readonly token: object
  readonly released: Deferred.Deferred<void>
}

/** A session is found by its owner and id together: another owner's session with the same id is a different one. */
const keyOf = (owner: string, id: SessionId) => `${owner}/${id}`

export const makeMemorySessions = (limits: MemoryLimits): SessionShape => {
  // A Map iterates in insertion order: re-inserting on use keeps the least recently used first.
  const sessions = new Map<string, StoredSession>()
  const holders = new Map<string, Holder>()

  const live = (key: string, now: number): StoredSession | undefined => {
    const session = sessions.get(key)
    if (session !== undefined && session.expiresAt <= now) {
      sessions.delete(key)
      return undefined
    }
    return session
  }

  const touch = (key: string, session: StoredSession, now: number) => {
    session.expiresAt = now + limits.ttlMillis
    sessions.delete(key)
    sessions.set(key, session)
  }

  /** Takes the lock if it is free: the check and the set in one synchronous step. */
  const tryTake = (key: string, token: object) =>
    Effect.sync(() => {
      if (holders.has(key)) return false
      holders.set(key, { token, released: Deferred.unsafeMake(FiberId.none) })
      return true
    })

  /** Tries, and while it is taken waits for its holder's release and tries again. */
  const take = (key: string, token: object): Effect.Effect<void> =>
    Effect.flatMap(tryTake(key, token), (taken) => {
      if (taken) return Effect.void
      const holder = holders.get(key)
      return holder === undefined
        ? take(key, token)
        : Effect.zipRight(Deferred.await(holder.released), take(key, token))
    })

  const release = (key: string, token: object) =>
    Effect.suspend(() => {
      const holder = holders.get(key)
      if (holder?.token !== token) return Effect.void
      holders.delete(key)
      return Deferred.succeed(holder.released, undefined)
    })

  return {
    history: (owner, id) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const key = keyOf(owner, id)
        const session = live(key, now)
        if (session === undefined) return Option.none()
        touch(key, session, now)
        return Option.some(session.turns)
      }),
    append: (owner, id, turn) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const key = keyOf(owner, id)
        const session = live(key, now) ?? { turns: [], expiresAt: 0 }
        session.turns = [...session.turns, turn].slice(-limits.maxTurns)
        touch(key, session, now)
        for (const oldest of sessions.keys()) {
          if (sessions.size <= limits.maxSessions) break
          sessions.delete(oldest)
        }
      }),
    remove: (owner, id) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const key = keyOf(owner, id)
        return live(key, now) !== undefined && sessions.delete(key)
      }),
    lock: (owner, id) =>
      Effect.suspend(() => {
        const key = keyOf(owner, id)
        const token = {}
        return holdLock({
          id,
          tryTake: tryTake(key, token),
          take: take(key, token),
          release: release(key, token),
          timeoutMillis: limits.lockTimeoutMillis
        })
      }),
    readiness: Effect.succeed({ status: "embedded", kind: "memory" })
  }
}
