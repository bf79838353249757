/**
 * The rate limiter's rules, on Effect's TestClock: windows that start again on time, reservations settled with the
 * real count, concurrency slots held for a turn's scope (and freed when their replica is gone), failed
 * authentications per address, and what happens when the store is unreachable. One suite, run against both stores:
 * memory, and Redis (with REDIS_URL) — the Redis script takes its time from the caller, so TestClock drives it too.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  Cause,
  Clock,
  Effect,
  Exit,
  FiberRef,
  Logger,
  LogLevel,
  Metric,
  Option,
  Redacted,
  Scope,
  TestClock
} from "effect"
import { HttpServerRequest } from "@effect/platform"
import { type Caller, clientAddress } from "../src/Auth.js"
import {
  Check,
  CurrentQuotaReport,
  failOpen,
  type LimiterStore,
  LimiterStoreError,
  makeRateLimit,
  QuotaReport,
  type RateLimitOptions,
  type RateLimitShape,
  type Limits
} from "../src/RateLimit.js"
import { makeMemoryLimiterStore } from "../src/RateLimit/Memory.js"
import { makeRedisLimiterStore } from "../src/RateLimit/Redis.js"
import { isolatedPrefix, privateRedisServer } from "./support/redis.js"
import { eventually, serviceUrl } from "./support/services.js"

const redisUrl = serviceUrl("REDIS_URL", "the rate limiter's tests on Redis")

interface StoreUnderTest {
  readonly name: string
  /** A store, and a key prefix of the test's own. */
  readonly make: Effect.Effect<{ readonly store: LimiterStore; readonly keyPrefix: string }, never, Scope.Scope>
}

const memory: StoreUnderTest = {
  name: "memory",
  make: Effect.sync(() => ({ store: makeMemoryLimiterStore(), keyPrefix: "test:" }))
}

const redis = (url: string): StoreUnderTest => ({
  name: "redis",
  make: Effect.gen(function* () {
    const keyPrefix = yield* isolatedPrefix(url)
    const store = yield* makeRedisLimiterStore({
      url: Redacted.make(url),
      connectTimeoutMillis: 2_000,
      commandTimeoutMillis: 1_000
    })
    return { store, keyPrefix }
  })
})

const stores = [memory, ...(redisUrl === undefined ? [] : [redis(redisUrl)])]

const caller = (limits: Partial<Limits>, keyId = "key_test"): Caller => ({
  keyId,
  limits: { requestsPerMinute: 0, tokensPerMinute: 0, concurrency: 0, ...limits }
})

/** Runs `effect` as one request would, returning what its RateLimit headers would be made of. */
const withReport = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const report = new QuotaReport()
    const exit = yield* Effect.exit(Effect.locally(effect, CurrentQuotaReport, report))
    return { exit, report }
  })

/**
 * Runs a turn as a request would: the tokens left right after its reservation (what a stream's headers say), then
 * its end, charged `charge` (or, unsettled, its prompt).
 */
const tokensLeftAfter = (
  service: RateLimitShape,
  who: Caller,
  estimate: { readonly promptTokens: number; readonly maxNewTokens: number },
  charge?: number
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const admission = yield* service.turn(who, estimate)
      const left = (yield* FiberRef.get(CurrentQuotaReport))?.states.get("tokens")?.remaining
      if (charge !== undefined) yield* admission.settle(charge)
      return left
    })
  ).pipe(Effect.locally(CurrentQuotaReport, new QuotaReport()))

/** The typed failure of an exit, if it failed with one. */
const refusal = <A, E>(exit: Exit.Exit<A, E>): E | undefined =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined

describe.each(stores)("rate limits in $name", (backend) => {
  const limiter = (options: Partial<RateLimitOptions> = {}) =>
    Effect.gen(function* () {
      const { store, keyPrefix } = yield* backend.make
      const service = yield* makeRateLimit(store, {
        keyPrefix,
        failMode: "closed",
        authFailuresPerMinute: 3,
        storeName: backend.name,
        ...options
      })
      return { service, store, keyPrefix }
    })

  it.scoped("a key gets its requests per minute, then 429 until its window starts again a minute later", () =>
    Effect.gen(function* () {
      const { service } = yield* limiter()
      const alice = caller({ requestsPerMinute: 3 })
      for (const remaining of [2, 1, 0]) {
        const { exit, report } = yield* withReport(service.request(alice))
        expect(Exit.isSuccess(exit)).toBe(true)
        expect(report.states.get("requests")).toEqual({
          policy: "requests",
          limit: 3,
          remaining,
          resetSeconds: Option.some(60)
        })
      }
      yield* TestClock.adjust("59 seconds")
      const refused = yield* withReport(service.request(alice))
      expect(refusal(refused.exit)).toMatchObject({ _tag: "RateLimited", limit: "requests", retry_after_seconds: 1 })
      expect(refused.report.states.get("requests")?.remaining).toBe(0)
      // Another key has its own window.
      expect(Exit.isSuccess(yield* Effect.exit(service.request(caller({ requestsPerMinute: 3 }, "key_other"))))).toBe(
        true
      )

      yield* TestClock.adjust("1 second")
      const again = yield* withReport(service.request(alice))
      expect(Exit.isSuccess(again.exit)).toBe(true)
      expect(again.report.states.get("requests")?.remaining).toBe(2)
    })
  )

  it.scoped("0 means unlimited: nothing is counted or reported", () =>
    Effect.gen(function* () {
      const { service } = yield* limiter()
      for (let i = 0; i < 20; i++) {
        const { exit, report } = yield* withReport(service.request(caller({})))
        expect(Exit.isSuccess(exit)).toBe(true)
        expect(report.states.size).toBe(0)
      }
    })
  )

  it.scoped("a turn reserves its prompt and MAX_NEW_TOKENS, and is charged its real count when it settles", () =>
    Effect.gen(function* () {
      const { service } = yield* limiter()
      const alice = caller({ tokensPerMinute: 100 })
      const estimate = { promptTokens: 30, maxNewTokens: 20 }
      const first = yield* withReport(
        Effect.scoped(Effect.flatMap(service.turn(alice, estimate), (admission) => admission.settle(35)))
      )
      // 50 reserved, then 35 charged: a whole reply's headers say 65 are left.
      expect(first.report.states.get("tokens")).toMatchObject({ limit: 100, remaining: 65 })

      // 35 used: a turn reserving 50 fits (85), the next does not (85 + 50 > 100).
      const second = yield* Scope.make()
      yield* Scope.extend(service.turn(alice, estimate), second)
      const refused = yield* withReport(Effect.scoped(service.turn(alice, estimate)))
      expect(refusal(refused.exit)).toMatchObject({ _tag: "RateLimited", limit: "tokens", retry_after_seconds: 60 })
      expect(refused.report.states.get("tokens")?.remaining).toBe(15)
      expect(String(refusal(refused.exit)?.message)).toContain("reserves 50 tokens")

      // Never settled (it ended before any reply): charged its prompt, 30, so 65 are used.
      yield* Scope.close(second, Exit.void)
      expect(yield* tokensLeftAfter(service, alice, { promptTokens: 10, maxNewTokens: 25 }, 35)).toBe(0)
    })
  )

  it.scoped("a turn larger than the whole budget runs in a fresh window, and waits for one otherwise", () =>
    Effect.gen(function* () {
      const { service } = yield* limiter()
      const alice = caller({ tokensPerMinute: 40 })
      const big = { promptTokens: 30, maxNewTokens: 20 }
      expect(yield* tokensLeftAfter(service, alice, big, 45)).toBe(0)
      expect(refusal(yield* Effect.exit(tokensLeftAfter(service, alice, big)))).toMatchObject({ limit: "tokens" })
      yield* TestClock.adjust("1 minute")
      expect(yield* tokensLeftAfter(service, alice, big)).toBe(0)
    })
  )

  it.scoped("a settlement after its window ended does not touch the next window", () =>
    Effect.gen(function* () {
      const { service } = yield* limiter()
      const alice = caller({ tokensPerMinute: 100 })
      const estimate = { promptTokens: 10, maxNewTokens: 10 }
      const turn = yield* Scope.make()
      const admission = yield* Scope.extend(service.turn(alice, estimate), turn)
      yield* TestClock.adjust("61 seconds")
      expect(yield* tokensLeftAfter(service, alice, estimate, 10)).toBe(80)
      yield* admission.settle(90)
      yield* Scope.close(turn, Exit.void)
      // The new window holds its own turn's 10 tokens, nothing from the old one.
      expect(yield* tokensLeftAfter(service, alice, estimate)).toBe(70)
    })
  )

  it.scoped("a key runs at most its concurrency in turns; a slot is free again when its turn's scope closes", () =>
    Effect.gen(function* () {
      const { service } = yield* limiter()
      const alice = caller({ concurrency: 2, tokensPerMinute: 1_000 })
      const estimate = { promptTokens: 10, maxNewTokens: 10 }
      const first = yield* Scope.make()
      yield* Scope.extend(service.turn(alice, estimate), first)
      const second = yield* withReport(Scope.extend(service.turn(alice, estimate), first))
      expect(second.report.states.get("concurrency")).toEqual({
        policy: "concurrency",
        limit: 2,
        remaining: 0,
        resetSeconds: Option.none()
      })
      const refused = yield* withReport(Effect.scoped(service.turn(alice, estimate)))
      expect(refusal(refused.exit)).toMatchObject({ _tag: "RateLimited", limit: "concurrency", retry_after_seconds: 1 })
      // All or nothing: the refused turn reserved no tokens (two turns of 20 so far).
      expect(refused.report.states.get("tokens")?.remaining).toBe(960)

      // Long turns keep their slots past the lease's TTL: their holder renews them.
      yield* TestClock.adjust("2 minutes")
      expect(refusal(yield* Effect.exit(Effect.scoped(service.turn(alice, estimate))))).toMatchObject({
        limit: "concurrency"
      })
      yield* Scope.close(first, Exit.void)
      expect(Exit.isSuccess(yield* Effect.exit(Effect.scoped(service.turn(alice, estimate))))).toBe(true)
    })
  )

  it.scoped("a slot left by a replica that stopped renewing it (crashed) is free after the lease TTL", () =>
    Effect.gen(function* () {
      const { service, store, keyPrefix } = yield* limiter()
      const alice = caller({ concurrency: 1 })
      // What a crashed replica leaves: a lease nobody renews.
      yield* store.admit(
        [
          Check.Lease({
            key: `${keyPrefix}ratelimit:{key_test}:concurrency`,
            limit: 1,
            leaseId: "gone",
            ttlMillis: 30_000
          })
        ],
        0
      )
      const estimate = { promptTokens: 1, maxNewTokens: 1 }
      expect(refusal(yield* Effect.exit(Effect.scoped(service.turn(alice, estimate))))).toMatchObject({
        limit: "concurrency"
      })
      yield* TestClock.adjust("30 seconds")
      expect(Exit.isSuccess(yield* Effect.exit(Effect.scoped(service.turn(alice, estimate))))).toBe(true)
    })
  )

  it.scoped(
    "failed authentications: 429 for the address after the limit, also for a right key; others unaffected",
    () =>
      Effect.gen(function* () {
        const { service } = yield* limiter({ authFailuresPerMinute: 3 })
        for (let i = 0; i < 3; i++) {
          expect(Exit.isSuccess(yield* Effect.exit(service.authAttempt("203.0.113.7")))).toBe(true)
          expect(Exit.isSuccess(yield* Effect.exit(service.authFailed("203.0.113.7")))).toBe(true)
        }
        // The next attempt is refused before its key is even looked at.
        expect(refusal(yield* Effect.exit(service.authAttempt("203.0.113.7")))).toMatchObject({
          _tag: "RateLimited",
          limit: "auth_failures",
          retry_after_seconds: 60
        })
        expect(Exit.isSuccess(yield* Effect.exit(service.authAttempt("198.51.100.1")))).toBe(true)
        yield* TestClock.adjust("1 minute")
        expect(Exit.isSuccess(yield* Effect.exit(service.authAttempt("203.0.113.7")))).toBe(true)
      })
  )
})

describe("an unreachable store", () => {
  const unreachable: LimiterStore = {
    admit: () => new LimiterStoreError({ message: "connection refused" }),
    adjust: () => new LimiterStoreError({ message: "connection refused" }),
    renew: () => new LimiterStoreError({ message: "connection refused" }),
    release: () => new LimiterStoreError({ message: "connection refused" })
  }
  const options = { keyPrefix: "test:", authFailuresPerMinute: 3, storeName: "Redis" }
  const alice = caller({ requestsPerMinute: 1, tokensPerMinute: 10, concurrency: 1 })

  it.effect("fail closed: 503 RateLimitUnavailable with Retry-After, for requests, turns and auth checks", () =>
    Effect.gen(function* () {
      const service = yield* makeRateLimit(unreachable, { ...options, failMode: "closed" })
      for (const check of [
        service.request(alice),
        Effect.scoped(service.turn(alice, { promptTokens: 1, maxNewTokens: 1 })),
        service.authAttempt("203.0.113.7")
      ]) {
        expect(refusal(yield* Effect.exit(check))).toMatchObject({
          _tag: "RateLimitUnavailable",
          retry_after_seconds: 2
        })
      }
    }).pipe(Logger.withMinimumLogLevel(LogLevel.None))
  )

  it.effect("fail open: let through, counted in nexxi_rate_limit_fail_open_total, one warning per minute", () =>
    Effect.gen(function* () {
      const lines: Array<string> = []
      const logger = Logger.replace(
        Logger.defaultLogger,
        Logger.make(({ logLevel, message }) => lines.push(`${logLevel.label} ${String(message)}`))
      )
      const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.provide(effect, logger)
      const service = yield* makeRateLimit(unreachable, { ...options, failMode: "open" })
      const before = yield* failOpenCount
      for (let i = 0; i < 3; i++) {
        expect(Exit.isSuccess(yield* Effect.exit(run(service.request(alice))))).toBe(true)
        const turn = yield* Effect.exit(
          run(
            Effect.scoped(Effect.flatMap(service.turn(alice, { promptTokens: 1, maxNewTokens: 1 }), (t) => t.settle(5)))
          )
        )
        expect(Exit.isSuccess(turn)).toBe(true)
      }
      expect((yield* failOpenCount) - before).toBe(6)
      expect(lines.filter((line) => line.startsWith("WARN"))).toHaveLength(1)
      expect(lines[0]).toContain("fail open")
      yield* TestClock.adjust("1 minute")
      yield* run(service.request(alice))
      expect(lines.filter((line) => line.startsWith("WARN"))).toHaveLength(2)
    })
  )
})

describe.runIf(redisUrl !== undefined)("a Redis store that stops answering", () => {
  it.scopedLive(
    "each call fails with LimiterStoreError after the command timeout; answered again once it is back",
    () =>
      Effect.gen(function* () {
        const server = yield* privateRedisServer
        yield* Effect.addFinalizer(() => server.thaw)
        const commandTimeoutMillis = 300
        const store = yield* makeRedisLimiterStore({
          url: Redacted.make(server.url),
          connectTimeoutMillis: 2_000,
          commandTimeoutMillis
        })
        const check = Check.Window({ key: "test:frozen", limit: 10, cost: 1, windowMillis: 60_000 })
        yield* store.admit([check], Date.now())

        yield* server.freeze
        const start = yield* Clock.currentTimeMillis
        const error = yield* Effect.flip(store.admit([check], Date.now()))
        const waited = (yield* Clock.currentTimeMillis) - start
        expect(error._tag).toBe("LimiterStoreError")
        expect(waited).toBeGreaterThanOrEqual(commandTimeoutMillis - 50)
        expect(waited).toBeLessThan(commandTimeoutMillis + 1_000)

        yield* server.thaw
        yield* eventually(Effect.either(store.admit([check], Date.now())), (result) => result._tag === "Right")
      }).pipe(Logger.withMinimumLogLevel(LogLevel.Warning))
  )
})

const failOpenCount = Effect.map(Metric.value(failOpen), (state) => state.count as number)

describe("the client address of failed authentications", () => {
  const request = (socket: string, forwardedFor?: string) =>
    HttpServerRequest.fromWeb(
      new Request(
        "http://nexxi/v1/chat",
        forwardedFor === undefined ? {} : { headers: { "x-forwarded-for": forwardedFor } }
      )
    ).modify({ remoteAddress: socket })

  it("is the socket's peer unless TRUST_PROXY says how many proxies append to X-Forwarded-For", () => {
    expect(clientAddress(request("203.0.113.7", "198.51.100.1"), 0)).toBe("203.0.113.7")
    expect(clientAddress(request("10.0.0.2", "198.51.100.1"), 1)).toBe("198.51.100.1")
    // What the client prepends itself is not believed.
    expect(clientAddress(request("10.0.0.2", "192.0.2.66, 198.51.100.1"), 1)).toBe("198.51.100.1")
    // Two proxies: the address the outer one saw.
    expect(clientAddress(request("10.0.0.3", "192.0.2.66, 198.51.100.1, 10.0.0.2"), 2)).toBe("198.51.100.1")
    // Fewer entries than proxies: the farthest there is.
    expect(clientAddress(request("10.0.0.2"), 1)).toBe("10.0.0.2")
    expect(clientAddress(request("10.0.0.2", "198.51.100.1"), 3)).toBe("198.51.100.1")
  })

  it("counts an IPv4 client once however it is written, and an IPv6 client by its /64", () => {
    expect(clientAddress(request("::ffff:203.0.113.7"), 0)).toBe("203.0.113.7")
    expect(clientAddress(request("2001:db8:85a3:1234:8a2e:370:7334:1"), 0)).toBe("2001:db8:85a3:1234::/64")
    expect(clientAddress(request("2001:db8:85a3:1234::42"), 0)).toBe("2001:db8:85a3:1234::/64")
    expect(clientAddress(request("2001:db8::1"), 0)).toBe("2001:db8:0:0::/64")
    expect(clientAddress(request("::1"), 0)).toBe("0:0:0:0::/64")
  })
})
