/**
 * Serves the real HttpApi in-process on a free loopback port, with the parts under test swapped for test layers,
 * and captures the JSON log lines it writes.
 */
import { HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { ConfigProvider, Effect, Layer, Logger } from "effect"
import { createServer } from "node:http"
import { AppConfig } from "../../src/AppConfig.js"
import { Chat } from "../../src/Chat.js"
import { Generator } from "../../src/Generator.js"
import { EchoGenerator } from "../../src/Generator/Echo.js"
import { HttpAppLive } from "../../src/Http.js"
import { InFlight } from "../../src/Http/InFlight.js"
import { Keys } from "../../src/Keys.js"
import { jsonLogger } from "../../src/Logging.js"
import { Metrics } from "../../src/Metrics.js"
import type { RateLimit } from "../../src/RateLimit.js"
import { RateLimitLive } from "../../src/RateLimit/Live.js"
import { Safety } from "../../src/Safety.js"
import { SessionLive } from "../../src/Session/Live.js"
import { Storage } from "../../src/Storage.js"
import { loadTokenizer, Tokenizer } from "../../src/Tokenizer.js"

export const TEST_API_KEY = "test-key-0123456789abcdef0123456789abcdef"

/** Loaded once per test file rather than once per server: it takes about 60 ms. */
const tokenizer = Layer.succeed(Tokenizer, Tokenizer.make(loadTokenizer()))

export interface TestServerOptions {
  readonly env?: Record<string, string>
  readonly generator?: Layer.Layer<Generator, unknown, AppConfig>
  readonly safety?: Layer.Layer<Safety>
  /** Memory storage (`Storage.Test`) unless given; `StorageLive` reads the server's configuration. */
  readonly storage?: Layer.Layer<Storage, unknown, AppConfig>
  /** The server's API_KEY, sent by `request` (TEST_API_KEY by default): another key is another caller. */
  readonly apiKey?: string
  /** Where spans go (e.g. an in-memory exporter); none by default. */
  readonly tracing?: Layer.Layer<never>
  /** Managed keys in memory (`Keys.Test`) unless given; `KeysLive` reads the server's configuration. */
  readonly keys?: Layer.Layer<Keys, unknown, AppConfig>
  /** `RateLimitLive` unless given: Redis when the env has REDIS_URL, else memory. */
  readonly rateLimit?: Layer.Layer<RateLimit, unknown, AppConfig>
}

export interface TestServer {
  readonly url: string
  readonly logs: ReadonlyArray<string>
  /** `fetch` against the server, with the API key unless `headers` says otherwise. */
  readonly request: (path: string, init?: RequestInit & { readonly json?: unknown }) => Promise<Response>
}

export const testConfig = (env: Record<string, string> = {}) =>
  Layer.setConfigProvider(
    ConfigProvider.fromMap(
      new Map(Object.entries({ API_KEY: TEST_API_KEY, ECHO_TOKEN_DELAY_MS: "0", LOG_LEVEL: "debug", ...env }))
    )
  )

/** Starts a server for the current scope; it stops when the scope closes. */
export const startTestServer = (options: TestServerOptions = {}) =>
  Effect.gen(function* () {
    const logs: Array<string> = []
    const httpServer = createServer()
    const services = Chat.Default.pipe(
      Layer.provideMerge(
        Layer.mergeAll(
          options.safety ?? Safety.Default,
          SessionLive,
          Layer.orDie(options.storage ?? Storage.Test().layer),
          Layer.orDie(options.generator ?? EchoGenerator),
          Metrics.Default,
          tokenizer,
          Layer.orDie(options.keys ?? Keys.Test().layer),
          Layer.orDie(options.rateLimit ?? RateLimitLive)
        )
      )
    )
    const layer = HttpAppLive.pipe(
      Layer.provideMerge(NodeHttpServer.layer(() => httpServer, { host: "127.0.0.1", port: 0 })),
      Layer.provide(services),
      Layer.provide(InFlight.Default),
      Layer.provide(options.tracing ?? Layer.empty),
      Layer.provide(AppConfig.Default),
      Layer.provide(
        Logger.replace(
          Logger.defaultLogger,
          jsonLogger((line) => logs.push(line))
        )
      ),
      Layer.provide(
        testConfig({ ...options.env, ...(options.apiKey === undefined ? {} : { API_KEY: options.apiKey }) })
      )
    )
    const context = yield* Layer.build(layer)
    // As the real server does once its grace period is over: without it, a keep-alive socket of `fetch` that once
    // shared the server with an aborted stream holds the close for about three seconds.
    yield* Effect.addFinalizer(() => Effect.sync(() => httpServer.closeAllConnections()))
    const server = yield* Effect.provide(HttpServer.HttpServer, context)
    const address = server.address as HttpServer.TcpAddress
    const url = `http://127.0.0.1:${address.port}`
    const request: TestServer["request"] = (path, init = {}) => {
      const { json, headers, ...rest } = init
      return fetch(url + path, {
        ...rest,
        headers: {
          "x-api-key": options.apiKey ?? TEST_API_KEY,
          ...(json === undefined ? {} : { "content-type": "application/json" }),
          ...(headers as Record<string, string> | undefined)
        },
        ...(json === undefined ? {} : { body: JSON.stringify(json) })
      })
    }
    return { url, logs, request } satisfies TestServer
  })
