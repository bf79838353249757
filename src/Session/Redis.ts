/**
 * Sessions in Redis, shared by every replica. Keys (all under `REDIS_KEY_PREFIX`):
 *
 *   session:<owner>:<id>   a list of turns, one JSON element per turn, with a TTL refreshed on every use
 *   lock:<owner>:<id>      the session's lock: a random token, with an expiry
 *
 * The owner (the API key's id, never the key) is part of the key: another key's session is simply not there.
 * A turn is one list element, written in one MULTI with its trim and TTL, so a reader sees whole turns or none.
 *
 * Outages: no offline queue and no resending, bounded connect and command timeouts, so a request that needs Redis
 * while it is down fails at once with `SessionUnavailable` (503) instead of hanging; the client keeps reconnecting
 * in the background, so Nexxi recovers by itself when Redis is back.
 */
import { Effect, Metric, Option, type Redacted, Schedule, Schema, type Scope } from "effect"
import { randomUUID } from "node:crypto"
import type { DependencyHealth } from "../Domain/Health.js"
import { type SessionId, Turn } from "../Domain/Session.js"
import { connectRedis, errorMessage } from "../Redis.js"
import { holdLock, type SessionShape, SessionUnavailable } from "../Session.js"

export interface RedisSessionOptions {
  readonly url: Redacted.Redacted
  readonly keyPrefix: string
  readonly ttlMillis: number
  readonly maxTurns: number
  readonly lockTimeoutMillis: number
  /** How long a lock outlives a holder that stopped renewing it (a crashed replica). */
  readonly lockTtlMillis: number
  readonly connectTimeoutMillis: number
  readonly commandTimeoutMillis: number
}

type Operation = "history" | "append" | "remove" | "lock" | "unlock" | "renew_lock" | "ping"
const operations: ReadonlyArray<Operation> = ["history", "append", "remove", "lock", "unlock", "renew_lock", "ping"]

const storeErrors = Metric.counter("nexxi_session_store_errors_total", {
  description: "Session store (Redis) commands that failed or timed out, by operation.",
  incremental: true
})

/** How a waiting request polls a taken lock: soon at first (most turns are short), then every 100 ms at most. */
const lockPolling = Schedule.exponential("10 millis", 1.5).pipe(
  Schedule.union(Schedule.spaced("100 millis")),
  Schedule.jittered
)

/** Deletes the lock only if it still holds this holder's token: an expired lock may have a new holder. */
const RELEASE_LOCK = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`

/** Extends the lock only if it still holds this holder's token. */
const RENEW_LOCK = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`

const decodeTurn = Schema.decodeUnknown(Schema.parseJson(Turn))
const encodeTurn = Schema.encode(Schema.parseJson(Turn))

/** MULTI answers one [error, reply] pair per command, or null when the transaction was aborted. */
const repliesOf = (results: Array<[Error | null, unknown]> | null) => {
  if (results === null) return Effect.fail(new Error("transaction aborted"))
  const failed = results.find(([error]) => error !== null)
  return failed === undefined ? Effect.succeed(results.map(([, reply]) => reply)) : Effect.fail(failed[0])
}

export const makeRedisSessions = (options: RedisSessionOptions): Effect.Effect<SessionShape, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { client, lastError } = yield* connectRedis({
      url: options.url,
      connectTimeoutMillis: options.connectTimeoutMillis,
      commandTimeoutMillis: options.commandTimeoutMillis,
      name: "Session store",
      connectedMessage: "Sessions are kept in Redis",
      unreachableAtStartMessage: "Session store (Redis) not reachable at start-up: sessions answer 503 until it is"
    })
    // Registered at 0 so that dashboards and alerts see the series before the first failure.
    for (const operation of operations) yield* Metric.incrementBy(Metric.tagged(storeErrors, "operation", operation), 0)

    /**
     * Every Redis call: counted and logged when it fails, and a 503 for the client. The client bounds each command
     * in time itself (`commandTimeout`); an Effect timeout around it would cost two fibers and a timer per command.
     */
    const guarded = <A>(operation: Operation, effect: Effect.Effect<A, unknown>) =>
      effect.pipe(
        Effect.tapError((cause) =>
          Effect.zipRight(
            Metric.increment(Metric.tagged(storeErrors, "operation", operation)),
            Effect.logDebug(`Session store (Redis) ${operation} failed`, errorMessage(cause))
          )
        ),
        Effect.mapError(
          () =>
            new SessionUnavailable({
              message: "Sessions are unavailable: the session store (Redis) cannot be reached. Retry shortly.",
              retry_after_seconds: 2
            })
        ),
        Effect.withSpan(`Session.redis.${operation}`)
      )

    const command = <A>(run: () => Promise<A>) => Effect.tryPromise({ try: run, catch: (cause) => cause })

    const sessionKey = (owner: string, id: SessionId) => `${options.keyPrefix}session:${owner}:${id}`
    const lockKey = (owner: string, id: SessionId) => `${options.keyPrefix}lock:${owner}:${id}`

    const lock = (owner: string, id: SessionId) =>
      Effect.suspend(() => {
        const key = lockKey(owner, id)
        const token = randomUUID()
        let attempted = false
        const attempt = Effect.suspend(() => {
          attempted = true
          return guarded(
            "lock",
            command(() => client.set(key, token, "PX", options.lockTtlMillis, "NX"))
          )
        }).pipe(Effect.map((reply) => reply === "OK"))
        const renewEvery = Math.max(1, Math.floor(options.lockTtlMillis / 3))
        // A turn may outlast the lock's expiry (a long stream): the holder extends it while it lives.
        const renewals = Effect.sleep(renewEvery).pipe(
          Effect.zipRight(
            guarded(
              "renew_lock",
              command(() => client.eval(RENEW_LOCK, 1, key, token, options.lockTtlMillis))
            )
          ),
          Effect.map((reply) => reply === 1),
          // Redis down for a moment: keep trying, the lock has not expired yet.
          Effect.orElseSucceed(() => true),
          Effect.repeat({ while: (held) => held }),
          Effect.zipRight(Effect.logWarning("A session lock expired while its turn was still running"))
        )
        return holdLock({
          id,
          tryTake: attempt,
          take: Effect.asVoid(Effect.repeat(attempt, { schedule: lockPolling, until: (taken) => taken })),
          release: Effect.suspend(() =>
            attempted
              ? guarded(
                  "unlock",
                  command(() => client.eval(RELEASE_LOCK, 1, key, token))
                ).pipe(Effect.ignore)
              : Effect.void
          ),
          timeoutMillis: options.lockTimeoutMillis
        }).pipe(Effect.zipRight(Effect.forkScoped(renewals)), Effect.asVoid)
      })

    const readiness: Effect.Effect<DependencyHealth> = Effect.suspend(() =>
      client.status === "ready"
        ? guarded(
            "ping",
            command(() => client.ping())
          ).pipe(
            Effect.as<DependencyHealth>({ status: "up", kind: "redis" }),
            Effect.orElseSucceed((): DependencyHealth => ({ status: "down", kind: "redis", detail: "PING failed" }))
          )
        : Effect.succeed<DependencyHealth>({
            status: "down",
            kind: "redis",
            detail: `not connected (${client.status})${Option.match(lastError(), { onNone: () => "", onSome: (error) => `: ${error}` })}`
          })
    )

    const session: SessionShape = {
      history: (owner, id) => {
        const key = sessionKey(owner, id)
        return guarded(
          "history",
          command(() => client.multi().lrange(key, 0, -1).pexpire(key, options.ttlMillis).exec()).pipe(
            Effect.flatMap(repliesOf)
          )
        ).pipe(
          Effect.flatMap(([entries]) => {
            const turns = entries as ReadonlyArray<string>
            return turns.length === 0
              ? Effect.succeedNone
              : Effect.asSome(Effect.forEach(turns, (turn) => Effect.orDie(decodeTurn(turn))))
          })
        )
      },
      append: (owner, id, turn) => {
        const key = sessionKey(owner, id)
        return Effect.orDie(encodeTurn(turn)).pipe(
          Effect.flatMap((json) =>
            guarded(
              "append",
              command(() =>
                client.multi().rpush(key, json).ltrim(key, -options.maxTurns, -1).pexpire(key, options.ttlMillis).exec()
              ).pipe(Effect.flatMap(repliesOf))
            )
          ),
          Effect.asVoid
        )
      },
      remove: (owner, id) =>
        guarded(
          "remove",
          command(() => client.del(sessionKey(owner, id)))
        ).pipe(Effect.map((deleted) => deleted > 0)),
      lock,
      readiness
    }
    return session
  })
