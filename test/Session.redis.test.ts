/**
 * What only the Redis store does, against a real Redis: expiry on the server's clock, locks that outlive a crashed
 * replica but not a live one, and outages (a private redis-server stopped and started again). The contract shared
 * with the memory store is in Session.store.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Exit, Option, Scope } from "effect"
import { privateRedisServer, redisClient, redisStore } from "./support/redis.js"
import { sessionId, turn } from "./support/sessions.js"
import { eventually, serviceUrl } from "./support/services.js"

const redisUrl = serviceUrl("REDIS_URL", "the Redis-only session tests")

describe.runIf(redisUrl !== undefined)("Redis sessions", () => {
  const url = redisUrl!
  const call = <A>(run: () => Promise<A>) => Effect.promise(run)

  describe("TTL", () => {
    it.scopedLive("each turn is one list element under the owner's key id, with the session's TTL", () =>
      Effect.gen(function* () {
        const store = yield* redisStore(url, { ttlMillis: 60_000 })
        const redis = yield* redisClient(url)
        yield* store.append("key_0123abcd", sessionId(1), turn(1))
        yield* store.append("key_0123abcd", sessionId(1), turn(2))
        const key = `${store.keyPrefix}session:key_0123abcd:${sessionId(1)}`
        expect(yield* call(() => redis.llen(key))).toBe(2)
        const ttl = yield* call(() => redis.pttl(key))
        expect(ttl).toBeGreaterThan(55_000)
        expect(ttl).toBeLessThanOrEqual(60_000)
      })
    )

    it.scopedLive("reading a session refreshes its TTL", () =>
      Effect.gen(function* () {
        const store = yield* redisStore(url, { ttlMillis: 60_000 })
        const redis = yield* redisClient(url)
        yield* store.append("alice", sessionId(1), turn(1))
        const key = `${store.keyPrefix}session:alice:${sessionId(1)}`
        // As if 59 seconds had passed without use.
        yield* call(() => redis.pexpire(key, 1_000))
        yield* store.history("alice", sessionId(1))
        expect(yield* call(() => redis.pttl(key))).toBeGreaterThan(55_000)
      })
    )

    it.scopedLive("a session unused for its TTL is gone", () =>
      Effect.gen(function* () {
        const store = yield* redisStore(url, { ttlMillis: 150 })
        const redis = yield* redisClient(url)
        yield* store.append("alice", sessionId(1), turn(1))
        const key = `${store.keyPrefix}session:alice:${sessionId(1)}`
        // EXISTS does not count as use; a read through the store would refresh the TTL.
        yield* eventually(
          call(() => redis.exists(key)),
          (exists) => exists === 0
        )
        expect(yield* store.history("alice", sessionId(1))).toEqual(Option.none())
      })
    )
  })

  describe("lock", () => {
    it.scopedLive("a lock left by a crashed replica frees itself after SESSION_LOCK_TTL_MS", () =>
      Effect.gen(function* () {
        const store = yield* redisStore(url, { lockTimeoutMillis: 5_000 })
        const redis = yield* redisClient(url)
        const key = `${store.keyPrefix}lock:alice:${sessionId(1)}`
        yield* call(() => redis.set(key, "token-of-a-crashed-replica", "PX", 200))
        const start = yield* Clock.currentTimeMillis
        yield* store.lock("alice", sessionId(1))
        expect((yield* Clock.currentTimeMillis) - start).toBeGreaterThanOrEqual(150)
        expect(yield* call(() => redis.get(key))).not.toBe("token-of-a-crashed-replica")
      })
    )

    it.scopedLive("releasing never frees a lock that another holder has", () =>
      Effect.gen(function* () {
        const store = yield* redisStore(url, { lockTimeoutMillis: 50 })
        const redis = yield* redisClient(url)
        const key = `${store.keyPrefix}lock:alice:${sessionId(1)}`
        yield* call(() => redis.set(key, "another-holder", "PX", 10_000))
        const busy = yield* Effect.flip(Effect.scoped(store.lock("alice", sessionId(1))))
        expect(busy._tag).toBe("SessionBusy")
        expect(yield* call(() => redis.get(key))).toBe("another-holder")
      })
    )

    it.scopedLive(
      "a live holder keeps its lock past SESSION_LOCK_TTL_MS (a long stream), and frees it at the end",
      () =>
        Effect.gen(function* () {
          const replicaA = yield* redisStore(url, { lockTtlMillis: 150 })
          const replicaB = yield* redisStore(url, { keyPrefix: replicaA.keyPrefix, lockTimeoutMillis: 600 })
          const holder = yield* Scope.make()
          yield* Scope.extend(replicaA.lock("alice", sessionId(1)), holder)
          // B waits four times the lock's expiry: only renewals can keep A's lock alive that long.
          expect((yield* Effect.flip(Effect.scoped(replicaB.lock("alice", sessionId(1)))))._tag).toBe("SessionBusy")
          yield* Scope.close(holder, Exit.void)
          yield* Effect.scoped(replicaB.lock("alice", sessionId(1)))
        })
    )
  })

  describe("outage", () => {
    // A private server is thrown away with its data: no keys to clean up.
    const privatePrefix = "nexxi-test:"

    it.scopedLive("Redis down: fast SessionUnavailable and /ready down; back up: works again, same client", () =>
      Effect.gen(function* () {
        const server = yield* privateRedisServer
        const store = yield* redisStore(server.url, { keyPrefix: privatePrefix, lockTimeoutMillis: 2_000 })
        yield* store.append("alice", sessionId(1), turn(1))
        expect((yield* store.readiness).status).toBe("up")

        yield* server.stop
        const start = yield* Clock.currentTimeMillis
        for (const attempt of [
          store.history("alice", sessionId(1)),
          store.append("alice", sessionId(1), turn(2)),
          store.remove("alice", sessionId(1)),
          Effect.scoped(store.lock("alice", sessionId(1)))
        ]) {
          const error = yield* Effect.flip(attempt)
          expect(error._tag).toBe("SessionUnavailable")
          expect(error.message).toContain("Redis")
        }
        // No offline queue: each failed at once, not after a timeout (nor the lock's wait).
        expect((yield* Clock.currentTimeMillis) - start).toBeLessThan(1_000)
        expect(yield* store.readiness).toMatchObject({ status: "down", kind: "redis" })

        yield* server.start
        yield* eventually(
          Effect.either(store.append("bob", sessionId(2), turn(2))),
          (result) => result._tag === "Right"
        )
        expect((yield* store.readiness).status).toBe("up")
        expect(Option.isSome(yield* store.history("bob", sessionId(2)))).toBe(true)
      })
    )

    it.scopedLive("Redis that stops answering: each call fails after the command timeout, and recovers", () =>
      Effect.gen(function* () {
        const server = yield* privateRedisServer
        // Resumed even when an expectation fails: a stopped process would not exit on the finalizer's SIGTERM.
        yield* Effect.addFinalizer(() => server.thaw)
        const commandTimeoutMillis = 300
        const store = yield* redisStore(server.url, {
          keyPrefix: privatePrefix,
          commandTimeoutMillis,
          lockTimeoutMillis: 5_000
        })
        yield* store.append("alice", sessionId(1), turn(1))

        yield* server.freeze
        for (const attempt of [
          store.history("alice", sessionId(1)),
          store.append("alice", sessionId(1), turn(2)),
          Effect.scoped(store.lock("alice", sessionId(1)))
        ]) {
          const start = yield* Clock.currentTimeMillis
          const error = yield* Effect.flip(attempt)
          const waited = (yield* Clock.currentTimeMillis) - start
          expect(error._tag).toBe("SessionUnavailable")
          // Bounded by the command timeout, not by the lock's wait nor by Redis coming back.
          expect(waited).toBeGreaterThanOrEqual(commandTimeoutMillis - 50)
          expect(waited).toBeLessThan(commandTimeoutMillis + 1_000)
        }

        yield* server.thaw
        yield* eventually(Effect.either(store.history("alice", sessionId(1))), (result) => result._tag === "Right")
        const turns = Option.getOrThrow(yield* store.history("alice", sessionId(1)))
        // The append that timed out may have reached Redis after all (a timeout says nothing either way).
        expect(turns.length).toBeGreaterThanOrEqual(1)
      })
    )

    it.scopedLive("starting while Redis is down: start-up waits at most the connect timeout, then recovers", () =>
      Effect.gen(function* () {
        const server = yield* privateRedisServer
        yield* server.stop
        const start = yield* Clock.currentTimeMillis
        const store = yield* redisStore(server.url, { keyPrefix: privatePrefix, connectTimeoutMillis: 300 })
        expect((yield* Clock.currentTimeMillis) - start).toBeLessThan(2_000)
        expect((yield* store.readiness).status).toBe("down")
        yield* server.start
        yield* eventually(store.readiness, (health) => health.status === "up")
        yield* store.append("alice", sessionId(1), turn(1))
      })
    )
  })
})
