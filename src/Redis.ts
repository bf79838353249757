/**
 * A Redis connection as Nexxi's Redis-backed services (sessions, rate limits) want it: bounded connect and command
 * times, no offline queue (a request fails fast while Redis is away instead of waiting for it), reconnection in the
 * background, one log line per outage, and a start-up that does not wait for (or fail on) a missing Redis.
 */
import { Effect, Option, Redacted, Runtime, type Scope } from "effect"
import { Redis } from "ioredis"

export interface RedisConnectionOptions {
  readonly url: Redacted.Redacted
  readonly connectTimeoutMillis: number
  readonly commandTimeoutMillis: number
  /** Who uses it, for the log lines: "Session store", "Rate limiter". */
  readonly name: string
  readonly connectedMessage: string
  readonly unreachableAtStartMessage: string
}

export interface RedisConnection {
  readonly client: Redis
  /** The last connection error, while Redis is unreachable. */
  readonly lastError: () => Option.Option<string>
}

/** Reconnection backoff: quick at first, then once a second. */
export const reconnectDelayMillis = (attempt: number) => Math.min(50 * 2 ** attempt, 1_000)

export const errorMessage = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

export const connectRedis = (options: RedisConnectionOptions): Effect.Effect<RedisConnection, never, Scope.Scope> =>
  Effect.gen(function* () {
    const runLog = Runtime.runFork(yield* Effect.runtime<never>())
    let lastError: Option.Option<string> = Option.none()

    const client = yield* Effect.acquireRelease(
      Effect.sync(
        () =>
          new Redis(Redacted.value(options.url), {
            connectTimeout: options.connectTimeoutMillis,
            commandTimeout: options.commandTimeoutMillis,
            enableOfflineQueue: false,
            maxRetriesPerRequest: 0,
            autoResendUnfulfilledCommands: false,
            retryStrategy: reconnectDelayMillis
          })
      ),
      (client) =>
        Effect.promise(() => client.quit().catch(() => "not connected")).pipe(
          Effect.timeout(options.commandTimeoutMillis),
          Effect.ignore,
          Effect.ensuring(Effect.sync(() => client.disconnect()))
        )
    )
    // One warning per outage, not one per reconnection attempt; without a listener ioredis prints every error.
    client.on("error", (error: Error) => {
      if (Option.isNone(lastError)) runLog(Effect.logWarning(`${options.name} (Redis) unreachable`, error.message))
      lastError = Option.some(error.message)
    })
    client.on("ready", () => {
      if (Option.isSome(lastError)) runLog(Effect.logInfo(`${options.name} (Redis) reachable again`))
      lastError = Option.none()
    })

    // Start with a connection when Redis is there; when it is not, start anyway and say so.
    yield* Effect.async<void>((resume) => {
      const onReady = () => resume(Effect.void)
      if (client.status === "ready") onReady()
      else client.once("ready", onReady)
      return Effect.sync(() => void client.off("ready", onReady))
    }).pipe(
      Effect.timeoutTo({
        duration: options.connectTimeoutMillis,
        onSuccess: () => Effect.logInfo(options.connectedMessage),
        onTimeout: () => Effect.logWarning(options.unreachableAtStartMessage)
      }),
      Effect.flatten
    )
    return { client, lastError: () => lastError }
  })
