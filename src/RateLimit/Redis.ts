/**
 * Rate-limit counters in Redis, shared by every replica. Each admission is one Lua script, which Redis runs
 * atomically: it looks at every counter of the request, then applies all of them or none. Keys (under
 * `REDIS_KEY_PREFIX`, with the owner in a hash tag so that one script's keys share a Redis Cluster slot):
 *
 *   ratelimit:{<owner>}:requests | tokens | auth_failures   a hash {start, used}: the current window
 *   ratelimit:{<owner>}:concurrency                         a sorted set: lease id → expiry
 *
 * The time is the caller's (Effect's `Clock`), passed to the script: replicas agree to within their clock skew (NTP:
 * milliseconds, against one-minute windows), and tests drive it with `TestClock`. Keys also expire in Redis's own
 * time once their window (or last lease) is over, so idle clients leave nothing behind.
 *
 * The connection follows the session store's (`Session/Redis.ts`): bounded connect and command timeouts, no offline
 * queue, reconnection in the background, one warning per outage; a failed call is a `LimiterStoreError`, and the
 * fail mode decides.
 */
import { Clock, Effect, Option, type Redacted, type Scope } from "effect"
import { createHash } from "node:crypto"
import { type Check, type CheckState, type LimiterStore, LimiterStoreError } from "../RateLimit.js"
import { connectRedis, errorMessage } from "../Redis.js"

export interface RedisLimiterOptions {
  readonly url: Redacted.Redacted
  readonly connectTimeoutMillis: number
  readonly commandTimeoutMillis: number
}

/**
 * KEYS: one per check. ARGV[1]: now (ms); then four per check: "window", limit, cost, window length (ms); or
 * "lease", limit, lease id, lease TTL (ms). Returns the index (from 1) of the first check that did not pass, 0 when
 * all passed and were applied; then used, window start and ms to reset, per check.
 */
const ADMIT = `
local now = tonumber(ARGV[1])
local refused = 0
local looked = {}
for i, key in ipairs(KEYS) do
  local at = 2 + (i - 1) * 4
  local kind, limit, period = ARGV[at], tonumber(ARGV[at + 1]), tonumber(ARGV[at + 3])
  if kind == "window" then
    local cost = tonumber(ARGV[at + 2])
    local saved = redis.call("HMGET", key, "start", "used")
    local start, used = tonumber(saved[1]), tonumber(saved[2]) or 0
    if start == nil or now >= start + period then start, used = now, 0 end
    if refused == 0 and used + math.max(cost, 1) > limit then refused = i end
    looked[i] = {kind, start, used, cost, period}
  else
    redis.call("ZREMRANGEBYSCORE", key, "-inf", now)
    local held = redis.call("ZCARD", key)
    if refused == 0 and held >= limit then refused = i end
    looked[i] = {kind, 0, held, ARGV[at + 2], period}
  end
end
local reply = {refused}
for i, key in ipairs(KEYS) do
  local kind, start, used, arg, period = unpack(looked[i])
  local reset = 0
  if kind == "window" then
    if refused == 0 and arg > 0 then
      used = used + arg
      redis.call("HSET", key, "start", start, "used", used)
      redis.call("PEXPIRE", key, math.max(1, start + period - now))
    end
    reset = start + period - now
  elseif refused == 0 then
    redis.call("ZADD", key, now + period, arg)
    redis.call("PEXPIRE", key, period)
    used = used + 1
  end
  table.insert(reply, used)
  table.insert(reply, start)
  table.insert(reply, reset)
end
return reply`

/** KEYS[1]: a window. ARGV: the start of the window the reservation was made in, the change. */
const ADJUST = `
if tonumber(redis.call("HGET", KEYS[1], "start")) == tonumber(ARGV[1]) then
  if redis.call("HINCRBY", KEYS[1], "used", ARGV[2]) < 0 then redis.call("HSET", KEYS[1], "used", 0) end
end
return 0`

/** KEYS[1]: a lease set. ARGV: lease id, new expiry, TTL of the set. 1 when the lease was still held. */
const RENEW = `
if redis.call("ZSCORE", KEYS[1], ARGV[1]) then
  redis.call("ZADD", KEYS[1], ARGV[2], ARGV[1])
  redis.call("PEXPIRE", KEYS[1], ARGV[3])
  return 1
end
return 0`

export const makeRedisLimiterStore = (options: RedisLimiterOptions): Effect.Effect<LimiterStore, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { client } = yield* connectRedis({
      url: options.url,
      connectTimeoutMillis: options.connectTimeoutMillis,
      commandTimeoutMillis: options.commandTimeoutMillis,
      name: "Rate limiter",
      connectedMessage: "Rate limits are kept in Redis, shared by every replica",
      unreachableAtStartMessage: "Rate limiter (Redis) not reachable at start-up: RATE_LIMIT_FAIL_MODE applies"
    })

    /** A script by its SHA-1, sent whole only when Redis does not know it yet (after a restart). */
    const script = (source: string) => {
      const sha = createHash("sha1").update(source).digest("hex")
      return (keys: ReadonlyArray<string>, args: ReadonlyArray<string | number>) =>
        Effect.tryPromise({
          try: () =>
            client
              .evalsha(sha, keys.length, ...keys, ...args)
              .catch((error: unknown) =>
                errorMessage(error).startsWith("NOSCRIPT")
                  ? client.eval(source, keys.length, ...keys, ...args)
                  : Promise.reject(error)
              ),
          // Bounded in time by the client's `commandTimeout`.
          catch: (cause) => new LimiterStoreError({ message: errorMessage(cause) })
        })
    }
    const admitScript = script(ADMIT)
    const adjustScript = script(ADJUST)
    const renewScript = script(RENEW)

    const argumentsOf = (check: Check): ReadonlyArray<string | number> =>
      check._tag === "Window"
        ? ["window", check.limit, check.cost, check.windowMillis]
        : ["lease", check.limit, check.leaseId, check.ttlMillis]

    return {
      admit: (checks, now) =>
        admitScript(
          checks.map((check) => check.key),
          [now, ...checks.flatMap(argumentsOf)]
        ).pipe(
          Effect.map((reply) => {
            const numbers = (reply as ReadonlyArray<number>).map(Number)
            const refused = numbers[0]!
            const states = checks.map((_, index): CheckState => ({
              used: numbers[1 + index * 3]!,
              windowStart: numbers[2 + index * 3]!,
              resetMillis: numbers[3 + index * 3]!
            }))
            return { refused: refused === 0 ? Option.none() : Option.some(refused - 1), states }
          }),
          Effect.withSpan("RateLimit.redis.admit")
        ),
      adjust: (key, windowStart, delta) => Effect.asVoid(adjustScript([key], [windowStart, delta])),
      renew: (key, leaseId, expiresAt) =>
        Effect.gen(function* () {
          const ttl = Math.max(1, expiresAt - (yield* Clock.currentTimeMillis))
          return (yield* renewScript([key], [leaseId, expiresAt, ttl])) === 1
        }),
      release: (key, leaseId) =>
        Effect.tryPromise({
          try: () => client.zrem(key, leaseId),
          catch: (cause) => new LimiterStoreError({ message: errorMessage(cause) })
        }).pipe(Effect.asVoid)
    } satisfies LimiterStore
  })
