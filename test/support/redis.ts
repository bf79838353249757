/**
 * Redis for tests: a key prefix of each test's own on the shared server (removed afterwards, never FLUSHALL), and a
 * private `redis-server` a test can stop and start again to see Nexxi through an outage.
 */
import { Effect, Logger, LogLevel, Redacted, type Scope } from "effect"
import { Redis } from "ioredis"
import { spawn, type ChildProcess } from "node:child_process"
import { randomUUID } from "node:crypto"
import type { SessionShape } from "../../src/Session.js"
import { makeRedisSessions, type RedisSessionOptions } from "../../src/Session/Redis.js"
import { freePort } from "./process.js"

/** A plain client for looking at what the store wrote, closed with the scope. */
export const redisClient = (url: string): Effect.Effect<Redis, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const client = new Redis(url, { maxRetriesPerRequest: 1 })
      // Failures surface in the commands' results; without a listener ioredis also prints each one.
      client.on("error", () => {})
      return client
    }),
    (client) => Effect.promise(() => client.quit().catch(() => "closed"))
  )

/** A fresh key prefix whose keys are all deleted when the scope closes. */
export const isolatedPrefix = (url: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.gen(function* () {
    const client = yield* redisClient(url)
    const prefix = `nexxi-test:${randomUUID()}:`
    yield* Effect.addFinalizer(() =>
      Effect.promise(async () => {
        let cursor = "0"
        do {
          const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000)
          if (keys.length > 0) await client.del(...keys)
          cursor = next
        } while (cursor !== "0")
      })
    )
    return prefix
  })

export interface RedisServer {
  readonly url: string
  readonly stop: Effect.Effect<void>
  readonly start: Effect.Effect<void>
  /** Freezes the server (SIGSTOP): connections stay open and nothing is answered. */
  readonly freeze: Effect.Effect<void>
  readonly thaw: Effect.Effect<void>
}

const launch = (port: number) =>
  Effect.async<ChildProcess, Error>((resume) => {
    const child = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      {
        stdio: ["ignore", "pipe", "pipe"]
      }
    )
    let output = ""
    child.stdout!.on("data", (chunk) => {
      output += chunk
      if (output.includes("Ready to accept connections")) resume(Effect.succeed(child))
    })
    child.once("error", (error) => resume(Effect.fail(error)))
    child.once("exit", (code) => resume(Effect.fail(new Error(`redis-server exited (${code}):\n${output}`))))
  }).pipe(Effect.timeout("10 seconds"), Effect.orDie)

const terminate = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
    child.kill("SIGTERM")
  })

/** A `redis-server` of the test's own on a free port, without persistence; stopped when the scope closes. */
export const privateRedisServer: Effect.Effect<RedisServer, never, Scope.Scope> = Effect.gen(function* () {
  const port = yield* Effect.promise(freePort)
  let child = yield* launch(port)
  yield* Effect.addFinalizer(() => Effect.suspend(() => terminate(child)))
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: Effect.suspend(() => terminate(child)),
    start: Effect.map(launch(port), (started) => void (child = started)),
    freeze: Effect.sync(() => void child.kill("SIGSTOP")),
    thaw: Effect.sync(() => void child.kill("SIGCONT"))
  }
})

/** A Redis session store on its own key prefix (or the one given, to act as a second replica), with quiet logs. */
export const redisStore = (
  url: string,
  options: Partial<RedisSessionOptions> = {}
): Effect.Effect<SessionShape & { readonly keyPrefix: string }, never, Scope.Scope> =>
  Effect.gen(function* () {
    const keyPrefix = options.keyPrefix ?? (yield* isolatedPrefix(url))
    const store = yield* makeRedisSessions({
      url: Redacted.make(url),
      ttlMillis: 60_000,
      maxTurns: 50,
      lockTimeoutMillis: 100,
      lockTtlMillis: 10_000,
      connectTimeoutMillis: 2_000,
      commandTimeoutMillis: 1_000,
      ...options,
      keyPrefix
    }).pipe(Logger.withMinimumLogLevel(LogLevel.Warning))
    return { ...store, keyPrefix }
  })
