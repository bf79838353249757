/**
 * RateLimit: how much each API key may use, enforced for all replicas together. Per key:
 *
 *   requests     requests per minute, on every authenticated `/v1` endpoint (`Http/RateLimit.ts`)
 *   tokens       prompt + completion tokens per minute, on chat turns: a turn reserves its prompt and
 *                MAX_NEW_TOKENS when it starts and is charged its real count when it ends (`Chat.ts`)
 *   concurrency  chat turns running at once (a stream counts until its last event)
 *
 * and, per client address, failed authentications per minute (`Auth.ts`). Windows are a minute long, starting at
 * their first use. Every check of a request is made in one atomic step: a turn refused for its tokens does not take
 * a concurrency slot, and two replicas can never both take the last unit.
 *
 * Where the counters live is a `LimiterStore`: Redis when `REDIS_URL` is set (`RateLimit/Redis.ts`, one Lua script,
 * so any number of replicas share exact limits), else this process's memory (`RateLimit/Memory.ts`). The time
 * comes from Effect's `Clock` and is handed to the store, so tests drive both with `TestClock`.
 *
 * When the store cannot be reached, `RATE_LIMIT_FAIL_MODE` decides: `closed` answers 503, `open` lets the request
 * through unlimited, counting it in `nexxi_rate_limit_fail_open_total` and logging a warning.
 */
import { Clock, Context, Data, Duration, Effect, FiberRef, Metric, Option, Schema, type Scope } from "effect"
import { randomUUID } from "node:crypto"
import type { Caller } from "./Auth.js"
import { asErrorBody, ClientError, retryAfter } from "./Domain/Errors.js"
import { onScopeClose } from "./lib/finalizer.js"

// --- What clients see -------------------------------------------------------------------------------------------

export const LimitKind = Schema.Literal("requests", "tokens", "concurrency", "auth_failures")
export type LimitKind = typeof LimitKind.Type

export class RateLimited extends ClientError<RateLimited>()(
  "RateLimited",
  429,
  "A rate limit was reached: `limit` says which; retry after `retry_after_seconds` (also sent as Retry-After)",
  { limit: LimitKind, retry_after_seconds: Schema.Number }
) {}

export class RateLimitUnavailable extends ClientError<RateLimitUnavailable>()(
  "RateLimitUnavailable",
  503,
  "The rate limiter's store (Redis) cannot be reached and RATE_LIMIT_FAIL_MODE is closed; retry shortly",
  retryAfter
) {}

/** Their bodies, once: the middlewares that may answer with them share these, so OpenAPI lists each once. */
export const RateLimitedBody = asErrorBody(RateLimited)
export const RateLimitUnavailableBody = asErrorBody(RateLimitUnavailable)

/** A key's limits, defaults applied; 0 is unlimited. */
export interface Limits {
  readonly requestsPerMinute: number
  readonly tokensPerMinute: number
  readonly concurrency: number
}

/** The state of one policy after a check, as the RateLimit headers tell it. */
export interface QuotaState {
  readonly policy: "requests" | "tokens" | "concurrency"
  readonly limit: number
  readonly remaining: number
  /** Seconds until the window starts again; none for concurrency, which has no window. */
  readonly resetSeconds: Option.Option<number>
}

/**
 * The policies checked for the current request, filled in as checks are made (the request's, then its turn's) and
 * read when the response's headers are written. Set by the HTTP layer; outside a request nothing is recorded.
 */
export class QuotaReport {
  readonly states = new Map<QuotaState["policy"], QuotaState>()
}

export const CurrentQuotaReport: FiberRef.FiberRef<QuotaReport | undefined> = FiberRef.unsafeMake<
  QuotaReport | undefined
>(undefined)

// --- Metrics ----------------------------------------------------------------------------------------------------

export const rateLimited = Metric.counter("nexxi_rate_limited_total", {
  description:
    "Requests refused with 429, by the limit that was reached (requests, tokens, concurrency, auth_failures).",
  incremental: true
})

export const failOpen = Metric.counter("nexxi_rate_limit_fail_open_total", {
  description:
    "Checks let through without limits because the rate limiter's store (Redis) could not be reached and " +
    "RATE_LIMIT_FAIL_MODE is open.",
  incremental: true
})

const limitKinds: ReadonlyArray<LimitKind> = ["requests", "tokens", "concurrency", "auth_failures"]

// --- Stores -----------------------------------------------------------------------------------------------------

/**
 * One check of an atomic admission:
 * - `Window`: `cost` units in a window of `windowMillis` that began at its first use. It passes when the units used
 *   plus the cost (at least 1) fit in `limit`; a cost of 0 only looks (nothing is written).
 * - `Lease`: one of at most `limit` slots, held until released or, if its holder stops renewing it (a crashed
 *   replica), until `ttlMillis` after the last renewal.
 */
export type Check = Data.TaggedEnum<{
  Window: { readonly key: string; readonly limit: number; readonly cost: number; readonly windowMillis: number }
  Lease: { readonly key: string; readonly limit: number; readonly leaseId: string; readonly ttlMillis: number }
}>
export const Check = Data.taggedEnum<Check>()

/** A check's counter: units used in the window (or slots held), after the admission if it was admitted. */
export interface CheckState {
  readonly used: number
  /** When the window began (to settle a reservation in the same window); 0 for a lease. */
  readonly windowStart: number
  /** Until the window begins again; 0 for a lease. */
  readonly resetMillis: number
}

export interface Admission {
  /** The index of the first check that did not pass; none when every one passed and all were applied. */
  readonly refused: Option.Option<number>
  /** One per check, in order. */
  readonly states: ReadonlyArray<CheckState>
}

/** The store could not be reached or did not answer in time. */
export class LimiterStoreError extends Data.TaggedError("LimiterStoreError")<{ readonly message: string }> {}

/** Where the counters are. `now` is milliseconds on the caller's clock. */
export interface LimiterStore {
  /** Applies every check, or none when one of them does not pass. */
  readonly admit: (checks: ReadonlyArray<Check>, now: number) => Effect.Effect<Admission, LimiterStoreError>
  /** Adds `delta` (negative: gives back) to a window's use, if the window that began at `windowStart` is current. */
  readonly adjust: (key: string, windowStart: number, delta: number) => Effect.Effect<void, LimiterStoreError>
  /** Extends a lease; false when it is no longer held (it expired). */
  readonly renew: (key: string, leaseId: string, expiresAt: number) => Effect.Effect<boolean, LimiterStoreError>
  readonly release: (key: string, leaseId: string) => Effect.Effect<void, LimiterStoreError>
}

// --- The service ------------------------------------------------------------------------------------------------

/** A turn let through: its concurrency slot is held and its tokens reserved until the scope closes. */
export interface TurnAdmission {
  /**
   * Charges the turn's real token count (prompt + completion) in place of its reservation. Once: later calls do
   * nothing. A turn never settled is charged its prompt when its scope closes.
   */
  readonly settle: (tokens: number) => Effect.Effect<void>
}

export interface RateLimitShape {
  /** Counts one API request of the caller against its requests per minute. */
  readonly request: (caller: Caller) => Effect.Effect<void, RateLimited | RateLimitUnavailable>
  /**
   * Admits a chat turn: a concurrency slot for the current scope, and `promptTokens + maxNewTokens` tokens reserved
   * (at most the whole per-minute budget, so that a turn larger than it can still run in a fresh window).
   */
  readonly turn: (
    caller: Caller,
    estimate: { readonly promptTokens: number; readonly maxNewTokens: number }
  ) => Effect.Effect<TurnAdmission, RateLimited | RateLimitUnavailable, Scope.Scope>
  /** Before a key is checked: refuses an address that failed too often in the last minute. */
  readonly authAttempt: (address: string) => Effect.Effect<void, RateLimited | RateLimitUnavailable>
  /** Counts a failed authentication; refuses (429 rather than 401) beyond the limit. */
  readonly authFailed: (address: string) => Effect.Effect<void, RateLimited | RateLimitUnavailable>
}

export class RateLimit extends Context.Tag("nexxi/RateLimit")<RateLimit, RateLimitShape>() {}

export interface RateLimitOptions {
  readonly keyPrefix: string
  readonly failMode: "closed" | "open"
  readonly authFailuresPerMinute: number
  /** What the store is, for log lines ("Redis", "memory"). */
  readonly storeName: string
}

export const WINDOW = Duration.minutes(1)
const WINDOW_MILLIS = Duration.toMillis(WINDOW)

/** A concurrency slot outlives a replica that crashed holding it by this much; its holder renews it meanwhile. */
export const LEASE_TTL = Duration.seconds(30)
const LEASE_TTL_MILLIS = Duration.toMillis(LEASE_TTL)

/** How long a client refused for concurrency should wait: a turn's end cannot be predicted. */
const CONCURRENCY_RETRY_SECONDS = 1

/** One warning per minute at most while the store is unreachable. */
const WARNING_INTERVAL_MILLIS = 60_000

const seconds = (millis: number) => Math.max(1, Math.ceil(millis / 1000))

export const makeRateLimit = (store: LimiterStore, options: RateLimitOptions): Effect.Effect<RateLimitShape> =>
  Effect.gen(function* () {
    // Visible from the first scrape, so that dashboards and alerts have a series before the first refusal.
    for (const limit of limitKinds) yield* Metric.incrementBy(Metric.tagged(rateLimited, "limit", limit), 0)
    yield* Metric.incrementBy(failOpen, 0)

    // Keys in Redis Cluster must share a slot for one script: the hash tag `{…}` keeps a key's counters together.
    const keyOf = (what: string, owner: string) => `${options.keyPrefix}ratelimit:{${owner}}:${what}`

    let lastWarningAt = Number.NEGATIVE_INFINITY
    const warnUnreachable = (error: LimiterStoreError) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        if (now - lastWarningAt < WARNING_INTERVAL_MILLIS) return Effect.void
        lastWarningAt = now
        return Effect.logWarning(
          `Rate limiter (${options.storeName}) unreachable: ${error.message}; ` +
            (options.failMode === "open"
              ? "requests go through unlimited (fail open)"
              : "requests get 503 (fail closed)")
        )
      })

    /** A store call, or none when it failed and the fail mode is open. */
    const guarded = <A>(effect: Effect.Effect<A, LimiterStoreError>) =>
      effect.pipe(
        Effect.map(Option.some),
        Effect.catchAll((error) =>
          Effect.zipRight(
            warnUnreachable(error),
            options.failMode === "open"
              ? Effect.as(Metric.increment(failOpen), Option.none<A>())
              : Effect.fail(
                  new RateLimitUnavailable({
                    message: "Rate limits cannot be checked right now: their store is unreachable. Retry shortly.",
                    retry_after_seconds: 2
                  })
                )
          )
        )
      )

    /** Every check at once; the report gets each check's state; a refusal becomes a `RateLimited`. */
    const admit = (
      checks: ReadonlyArray<{
        readonly check: Check
        readonly policy?: QuotaState["policy"]
        readonly refusal: (state: CheckState, check: Check) => RateLimited
      }>
    ) =>
      Effect.gen(function* () {
        if (checks.length === 0) return Option.some<Admission>({ refused: Option.none(), states: [] })
        const now = yield* Clock.currentTimeMillis
        const admission = yield* guarded(
          store.admit(
            checks.map(({ check }) => check),
            now
          )
        )
        if (Option.isNone(admission)) return admission
        const report = yield* FiberRef.get(CurrentQuotaReport)
        checks.forEach(({ check, policy }, index) => {
          const state = admission.value.states[index]
          if (report === undefined || policy === undefined || state === undefined) return
          report.states.set(policy, {
            policy,
            limit: check.limit,
            remaining: Math.max(0, check.limit - state.used),
            resetSeconds: check._tag === "Window" ? Option.some(seconds(state.resetMillis)) : Option.none()
          })
        })
        if (Option.isSome(admission.value.refused)) {
          const index = admission.value.refused.value
          const refusal = checks[index]!.refusal(admission.value.states[index]!, checks[index]!.check)
          yield* Metric.increment(Metric.tagged(rateLimited, "limit", refusal.limit))
          return yield* refusal
        }
        return admission
      })

    const windowRefusal =
      (limit: LimitKind, message: (retryAfter: number, check: Check, state: CheckState) => string) =>
      (state: CheckState, check: Check) =>
        new RateLimited({
          limit,
          retry_after_seconds: seconds(state.resetMillis),
          message: message(seconds(state.resetMillis), check, state)
        })

    const requestRefusal = windowRefusal(
      "requests",
      (retry, check) =>
        `Rate limit reached: this API key may make ${check.limit} requests per minute; retry in ${retry} s`
    )
    const tokensRefusal = windowRefusal("tokens", (retry, check, state) => {
      const cost = check._tag === "Window" ? check.cost : 0
      return (
        `Token limit reached: this turn reserves ${cost} tokens (its prompt and MAX_NEW_TOKENS), and ` +
        `${Math.max(0, check.limit - state.used)} of this API key's ${check.limit} tokens per minute are left; ` +
        `retry in ${retry} s`
      )
    })
    const concurrencyRefusal = (_: CheckState, check: Check) =>
      new RateLimited({
        limit: "concurrency",
        retry_after_seconds: CONCURRENCY_RETRY_SECONDS,
        message: `Too many turns at once: this API key may run ${check.limit} chat turns at a time; retry when one has finished`
      })
    const authRefusal = windowRefusal(
      "auth_failures",
      (retry) => `Too many failed authentication attempts from this address; retry in ${retry} s`
    )

    const notLimited: TurnAdmission = { settle: () => Effect.void }

    /** A window check of a minute, when the limit is set (0: unlimited, nothing to check). */
    const perMinute = (
      limit: number,
      key: string,
      cost: number,
      refusal: (state: CheckState, check: Check) => RateLimited,
      policy?: QuotaState["policy"]
    ) =>
      limit > 0
        ? [
            {
              check: Check.Window({ key, limit, cost, windowMillis: WINDOW_MILLIS }),
              refusal,
              ...(policy ? { policy } : {})
            }
          ]
        : []

    /** Renews a lease while the turn lives (a stream may outlast LEASE_TTL); stops when it is gone. */
    const renewLease = (key: string, leaseId: string) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        // The store down for a moment: keep trying, the lease has not expired yet.
        return yield* Effect.orElseSucceed(store.renew(key, leaseId, now + LEASE_TTL_MILLIS), () => true)
      }).pipe(
        Effect.delay(Duration.millis(LEASE_TTL_MILLIS / 3)),
        Effect.repeat({ while: (held) => held }),
        Effect.zipRight(Effect.logWarning("Rate limiter: a concurrency slot expired while its turn was running"))
      )

    const turn: RateLimitShape["turn"] = (caller, estimate) =>
      // Uninterruptible from the admission until its release is registered, so that nothing taken can leak; the
      // store's own timeout bounds the wait.
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function* () {
          const { tokensPerMinute, concurrency } = caller.limits
          const tokensKey = keyOf("tokens", caller.keyId)
          const concurrencyKey = keyOf("concurrency", caller.keyId)
          const leaseId = randomUUID()
          const reserved = Math.min(Math.max(1, estimate.promptTokens + estimate.maxNewTokens), tokensPerMinute)
          const slot =
            concurrency > 0
              ? [
                  {
                    check: Check.Lease({
                      key: concurrencyKey,
                      limit: concurrency,
                      leaseId,
                      ttlMillis: LEASE_TTL_MILLIS
                    }),
                    policy: "concurrency" as const,
                    refusal: concurrencyRefusal
                  }
                ]
              : []
          const admission = yield* admit([
            ...perMinute(tokensPerMinute, tokensKey, reserved, tokensRefusal, "tokens"),
            ...slot
          ])
          if (Option.isNone(admission) || admission.value.states.length === 0) return notLimited

          if (concurrency > 0) {
            yield* onScopeClose(() =>
              store.release(concurrencyKey, leaseId).pipe(
                // Unreleased, it expires by itself after LEASE_TTL.
                Effect.catchAll((error) =>
                  Effect.logWarning(`Rate limiter: could not free a concurrency slot: ${error.message}`)
                )
              )
            )
            yield* Effect.forkScoped(restore(renewLease(concurrencyKey, leaseId)))
          }
          if (tokensPerMinute === 0) return notLimited

          const windowStart = admission.value.states[0]!.windowStart
          const report = yield* FiberRef.get(CurrentQuotaReport)
          let settled = false
          const settle = (used: number) =>
            Effect.suspend(() => {
              if (settled) return Effect.void
              settled = true
              const delta = Math.max(0, Math.round(used)) - reserved
              // A response written after the turn (not a stream) tells what is left after the real count.
              const state = report?.states.get("tokens")
              if (report !== undefined && state !== undefined) {
                report.states.set("tokens", {
                  ...state,
                  remaining: Math.min(state.limit, Math.max(0, state.remaining - delta))
                })
              }
              return delta === 0
                ? Effect.void
                : store
                    .adjust(tokensKey, windowStart, delta)
                    .pipe(
                      Effect.catchAll((error) =>
                        Effect.logWarning(`Rate limiter: could not settle a turn's tokens: ${error.message}`)
                      )
                    )
            })
          yield* onScopeClose(() => settle(estimate.promptTokens))
          return { settle }
        })
      ).pipe(Effect.withSpan("RateLimit.turn"))

    return {
      request: (caller) =>
        admit(
          perMinute(caller.limits.requestsPerMinute, keyOf("requests", caller.keyId), 1, requestRefusal, "requests")
        ).pipe(Effect.asVoid, Effect.withSpan("RateLimit.request")),
      turn,
      // A cost of 0 only looks: an address that reached the limit is refused before its key is checked.
      authAttempt: (address) =>
        Effect.asVoid(admit(perMinute(options.authFailuresPerMinute, keyOf("auth_failures", address), 0, authRefusal))),
      authFailed: (address) =>
        Effect.asVoid(admit(perMinute(options.authFailuresPerMinute, keyOf("auth_failures", address), 1, authRefusal)))
    } satisfies RateLimitShape
  })
