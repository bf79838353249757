/** What only the in-memory store does (LRU bound), and its timing on the TestClock. The contract: Session.store. */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option, Scope, TestClock } from "effect"
import { makeMemorySessions } from "../src/Session/Memory.js"
import { sessionId as id, turn } from "./support/sessions.js"

describe("in-memory sessions", () => {
  const limits = { ttlMillis: 60_000, maxSessions: 3, maxTurns: 4, lockTimeoutMillis: 2_000 }

  it.effect("forgets a session after its TTL of inactivity, and each use extends it", () =>
    Effect.gen(function* () {
      const sessions = makeMemorySessions(limits)
      yield* sessions.append("alice", id(1), turn(1))
      yield* TestClock.adjust(59_000)
      expect(Option.isSome(yield* sessions.history("alice", id(1)))).toBe(true)
      yield* TestClock.adjust(59_000)
      expect(Option.isSome(yield* sessions.history("alice", id(1)))).toBe(true)
      yield* TestClock.adjust(60_000)
      expect(yield* sessions.history("alice", id(1))).toEqual(Option.none())
    })
  )

  it.effect("keeps at most maxSessions, evicting the least recently used", () =>
    Effect.gen(function* () {
      const sessions = makeMemorySessions(limits)
      for (const n of [1, 2, 3]) yield* sessions.append("alice", id(n), turn(n))
      yield* sessions.history("alice", id(1)) // 1 is now the most recently used
      yield* sessions.append("alice", id(4), turn(4))
      expect(yield* sessions.history("alice", id(2))).toEqual(Option.none())
      for (const n of [1, 3, 4]) expect(Option.isSome(yield* sessions.history("alice", id(n)))).toBe(true)
    })
  )

  it.effect("a second request waits SESSION_LOCK_TIMEOUT_MS for the lock, then gets SessionBusy", () =>
    Effect.gen(function* () {
      const sessions = makeMemorySessions(limits)
      const holder = yield* Scope.make()
      yield* Scope.extend(sessions.lock("alice", id(1)), holder)
      const waiter = yield* Effect.fork(Effect.scoped(sessions.lock("alice", id(1))))
      yield* TestClock.adjust(1_999)
      expect(waiter.unsafePoll()).toBeNull()
      yield* TestClock.adjust(1)
      const exit = yield* Fiber.await(waiter)
      expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag).toBe("SessionBusy")
      yield* Scope.close(holder, Exit.void)
    })
  )

  it.effect("a lock is held for as long as its holder needs it: it does not expire in process", () =>
    Effect.gen(function* () {
      const sessions = makeMemorySessions(limits)
      const holder = yield* Scope.make()
      yield* Scope.extend(sessions.lock("alice", id(1)), holder)
      yield* TestClock.adjust("1 hour")
      const waiter = yield* Effect.fork(Effect.scoped(sessions.lock("alice", id(1))))
      yield* TestClock.adjust(2_000)
      expect((yield* Effect.flip(Fiber.join(waiter)))._tag).toBe("SessionBusy")
      yield* Scope.close(holder, Exit.void)
    })
  )
})
