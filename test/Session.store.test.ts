/**
 * The session store's contract, one suite run against both backends: process memory (always) and Redis (with
 * REDIS_URL; each test on a key prefix of its own). Expiry is observed differently in each (the TestClock in
 * memory, the server's own clock in Redis, and any read refreshes the TTL): see Session.memory and Session.redis.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option, Scope } from "effect"
import type { Turn } from "../src/Domain/Session.js"
import type { SessionShape } from "../src/Session.js"
import { makeMemorySessions } from "../src/Session/Memory.js"
import { redisStore } from "./support/redis.js"
import { sessionId, turn } from "./support/sessions.js"
import { serviceUrl } from "./support/services.js"

interface StoreLimits {
  readonly ttlMillis: number
  readonly maxTurns: number
  readonly lockTimeoutMillis: number
}

const defaults: StoreLimits = { ttlMillis: 60_000, maxTurns: 50, lockTimeoutMillis: 100 }

interface Backend {
  readonly name: string
  readonly make: (limits?: Partial<StoreLimits>) => Effect.Effect<SessionShape, never, Scope.Scope>
}

const redisUrl = serviceUrl("REDIS_URL", "the Redis session store tests")

const backends: ReadonlyArray<Backend> = [
  {
    name: "memory",
    make: (limits) => Effect.succeed(makeMemorySessions({ ...defaults, ...limits, maxSessions: 1_000 }))
  },
  ...(redisUrl === undefined
    ? []
    : [
        {
          name: "redis",
          make: (limits?: Partial<StoreLimits>) => redisStore(redisUrl, { ...defaults, ...limits })
        }
      ])
]

const userContents = (found: Option.Option<ReadonlyArray<Turn>>) =>
  Option.map(found, (turns) => turns.map((t) => t.user.content))

describe.each(backends)("$name session store", ({ make }) => {
  it.scopedLive("keeps whole turns in order, with every field, for their owner only", () =>
    Effect.gen(function* () {
      const store = yield* make()
      yield* store.append("alice", sessionId(1), turn(1))
      yield* store.append("alice", sessionId(1), turn(2))
      const found = yield* store.history("alice", sessionId(1))
      expect(found).toEqual(Option.some([turn(1), turn(2)]))
      expect(yield* store.history("bob", sessionId(1))).toEqual(Option.none())
      expect(yield* store.history("alice", sessionId(2))).toEqual(Option.none())
    })
  )

  it.scopedLive("remove forgets a session for its owner; for anyone else there is nothing to remove", () =>
    Effect.gen(function* () {
      const store = yield* make()
      yield* store.append("alice", sessionId(1), turn(1))
      expect(yield* store.remove("bob", sessionId(1))).toBe(false)
      expect(Option.isSome(yield* store.history("alice", sessionId(1)))).toBe(true)
      expect(yield* store.remove("alice", sessionId(1))).toBe(true)
      expect(yield* store.history("alice", sessionId(1))).toEqual(Option.none())
      expect(yield* store.remove("alice", sessionId(1))).toBe(false)
    })
  )

  it.scopedLive("the same id under another owner is another session", () =>
    Effect.gen(function* () {
      const store = yield* make()
      yield* store.append("alice", sessionId(1), turn(1))
      yield* store.append("bob", sessionId(1), turn(2))
      expect(userContents(yield* store.history("alice", sessionId(1)))).toEqual(Option.some(["u1"]))
      expect(userContents(yield* store.history("bob", sessionId(1)))).toEqual(Option.some(["u2"]))
    })
  )

  it.scopedLive("keeps at most maxTurns turns, dropping the oldest", () =>
    Effect.gen(function* () {
      const store = yield* make({ maxTurns: 3 })
      for (const n of [1, 2, 3, 4, 5]) yield* store.append("alice", sessionId(1), turn(n))
      expect(userContents(yield* store.history("alice", sessionId(1)))).toEqual(Option.some(["u3", "u4", "u5"]))
    })
  )

  it.scopedLive("readers never see half a turn while turns are being appended", () =>
    Effect.gen(function* () {
      const store = yield* make()
      const appends = Effect.forEach([1, 2, 3, 4, 5, 6, 7, 8], (n) => store.append("alice", sessionId(1), turn(n)), {
        concurrency: "unbounded"
      })
      const reads = Effect.forEach([1, 2, 3, 4, 5, 6, 7, 8], () => store.history("alice", sessionId(1)), {
        concurrency: "unbounded"
      })
      const [, seen] = yield* Effect.all([appends, reads], { concurrency: "unbounded" })
      for (const turns of seen.flatMap((found) => Option.toArray(found))) {
        for (const t of turns) expect(t.assistant.content).toBe(t.user.content.replace("u", "a"))
      }
      expect(Option.getOrThrow(yield* store.history("alice", sessionId(1)))).toHaveLength(8)
    })
  )

  describe("lock", () => {
    it.scopedLive("one holder at a time: another waits lockTimeout, then gets SessionBusy (409)", () =>
      Effect.gen(function* () {
        const store = yield* make({ lockTimeoutMillis: 50 })
        const holder = yield* Scope.make()
        yield* Scope.extend(store.lock("alice", sessionId(1)), holder)
        const busy = yield* Effect.flip(Effect.scoped(store.lock("alice", sessionId(1))))
        expect(busy._tag).toBe("SessionBusy")
        expect(busy.message).toContain(sessionId(1))
        yield* Scope.close(holder, Exit.void)
        yield* Effect.scoped(store.lock("alice", sessionId(1)))
      })
    )

    it.scopedLive("a waiting request gets the lock as soon as the holder is done", () =>
      Effect.gen(function* () {
        const store = yield* make({ lockTimeoutMillis: 5_000 })
        const holder = yield* Scope.make()
        yield* Scope.extend(store.lock("alice", sessionId(1)), holder)
        const waiter = yield* Effect.fork(Effect.scoped(store.lock("alice", sessionId(1))))
        yield* Scope.close(holder, Exit.void)
        expect(Exit.isSuccess(yield* Fiber.await(waiter))).toBe(true)
      })
    )

    it.scopedLive("a waiter that gives up (timeout or interruption) leaves the lock free", () =>
      Effect.gen(function* () {
        const store = yield* make({ lockTimeoutMillis: 5_000 })
        const holder = yield* Scope.make()
        yield* Scope.extend(store.lock("alice", sessionId(1)), holder)
        const waiter = yield* Effect.fork(Effect.scoped(store.lock("alice", sessionId(1))))
        yield* Fiber.interrupt(waiter)
        yield* Scope.close(holder, Exit.void)
        yield* Effect.scoped(store.lock("alice", sessionId(1))).pipe(Effect.timeout("1 second"))
      })
    )

    it.scopedLive("locks are per session and per owner", () =>
      Effect.gen(function* () {
        const store = yield* make({ lockTimeoutMillis: 50 })
        yield* store.lock("alice", sessionId(1))
        yield* store.lock("alice", sessionId(2))
        yield* store.lock("bob", sessionId(1))
      })
    )
  })
})
