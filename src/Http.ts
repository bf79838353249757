/**
 * The HTTP server: the API's handlers behind the edge middleware, error rendering, docs, CORS, and a graceful
 * shutdown that drains in-flight requests before the process exits.
 */
import { HttpApiBuilder, HttpApiSwagger, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import type { Server } from "node:http"
import { Api } from "./Api.js"
import { AppConfig } from "./AppConfig.js"
import { Chat } from "./Chat.js"
import { ChatHttpLive } from "./Chat/Http.js"
import { ConversationsHttpLive } from "./Conversations/Http.js"
import { GeneratorLive } from "./Generator/Live.js"
import { edge } from "./Http/Edge.js"
import { renderFailure } from "./Http/Errors.js"
import { InFlight } from "./Http/InFlight.js"
import { makeNodeServer } from "./Http/NodeServer.js"
import { rateLimitHeaderNames, RateLimitMiddlewareLive } from "./Http/RateLimit.js"
import { makeRouteTable, routesOf } from "./Http/Routes.js"
import { LoggingLive } from "./Logging.js"
import { OpenAiHttpLive } from "./OpenAi/Http.js"
import { KeysLive } from "./Keys/Postgres.js"
import { Metrics } from "./Metrics.js"
import { RateLimitLive } from "./RateLimit/Live.js"
import { Safety } from "./Safety.js"
import { SessionLive } from "./Session/Live.js"
import { StorageLive } from "./Storage/Live.js"
import { SystemHttpLive } from "./System/Http.js"
import { TracingLive } from "./Tracing.js"
import { Tokenizer } from "./Tokenizer.js"
import { WebHttpLive } from "./Web/Http.js"

const DOCS_PATH = "/docs"
const OPENAPI_PATH = "/openapi.json"

/** Docs are for developers: served outside production only. */
const DocsLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) =>
    config.isProduction
      ? Layer.empty
      : Layer.mergeAll(
          HttpApiSwagger.layer({ path: DOCS_PATH }),
          HttpApiBuilder.middlewareOpenApi({ path: OPENAPI_PATH })
        )
  )
)

const CorsLive = Layer.unwrapEffect(
  Effect.map(AppConfig, ({ corsOrigins }) =>
    corsOrigins.length === 0
      ? Layer.empty
      : HttpApiBuilder.middlewareCors({
          allowedOrigins: corsOrigins,
          allowedHeaders: ["content-type", "x-api-key", "authorization", "x-request-id"],
          exposedHeaders: ["x-request-id", "retry-after", ...rateLimitHeaderNames]
        })
  )
)

const routeLookup = Effect.map(AppConfig, (config) =>
  makeRouteTable([
    ...routesOf(Api),
    ...(config.isProduction ? [] : [DOCS_PATH, OPENAPI_PATH].map((path) => ({ method: "GET", path })))
  ])
)

/** Every failure inside the API becomes the common error body (before HttpApi's own encoding sees it). */
const ErrorRenderingLive = HttpApiBuilder.middleware(
  Effect.gen(function* () {
    const config = yield* AppConfig
    const render = renderFailure({ maxBodyBytes: config.maxBodyBytes, lookup: yield* routeLookup })
    return (app) => Effect.catchAllCause(app, render)
  })
)

const ApiLive = HttpApiBuilder.api(Api).pipe(
  Layer.provide([ChatHttpLive, ConversationsHttpLive, OpenAiHttpLive, SystemHttpLive, WebHttpLive]),
  Layer.provide(RateLimitMiddlewareLive)
)

/** The HTTP application on whatever `HttpServer` is provided (a real port, or a test server). */
export const HttpAppLive = Layer.unwrapEffect(
  Effect.gen(function* () {
    const config = yield* AppConfig
    const inFlight = yield* InFlight
    const lookup = yield* routeLookup
    const options = { maxBodyBytes: config.maxBodyBytes, lookup, inFlight, writeTimeoutMs: config.streamWriteTimeoutMs }
    return HttpApiBuilder.serve(edge(options)).pipe(
      Layer.provide([DocsLive, CorsLive, ErrorRenderingLive]),
      Layer.provide(ApiLive)
    )
  })
)

/**
 * The services on their configured backends; the defaults are embedded (no Redis, Postgres or GPU needed).
 */
export const ServicesLive = Chat.Default.pipe(
  Layer.provideMerge(
    Layer.mergeAll(
      Safety.Default,
      SessionLive,
      StorageLive,
      // The generator redacts what it puts on spans (OTEL_CAPTURE_CONTENT) with the same filter.
      GeneratorLive.pipe(Layer.provide(Safety.Default)),
      Metrics.Default,
      Tokenizer.Default,
      // Keys share Storage's database client (one PGlite); rate limits, the session store's Redis.
      KeysLive,
      RateLimitLive
    )
  )
)

/**
 * On SIGTERM/SIGINT: stop accepting connections, let in-flight requests and streams finish for
 * `SHUTDOWN_GRACE_MS`, then interrupt them (their finalizers save partial replies) and close what is left.
 */
const gracefulShutdown = (server: Server) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const { shutdownGraceMs } = yield* AppConfig
      const inFlight = yield* InFlight
      yield* Effect.addFinalizer(() =>
        Effect.gen(function* () {
          yield* Effect.logInfo(`Shutting down: draining ${inFlight.size()} request(s)`)
          server.close()
          yield* inFlight.drain(shutdownGraceMs)
          server.closeAllConnections()
        })
      )
    })
  )

export const HttpLive = Layer.unwrapEffect(
  Effect.gen(function* () {
    const config = yield* AppConfig
    const { host, port } = config
    const server = makeNodeServer(config)
    const listening = HttpAppLive.pipe(
      HttpServer.withLogAddress,
      Layer.provide(NodeHttpServer.layer(() => server, { host, port }))
    )
    // Built after the server, so that its finalizer runs first: drain before the handler is removed.
    return gracefulShutdown(server).pipe(Layer.provide(listening))
  })
).pipe(
  Layer.provide(ServicesLive),
  Layer.provideMerge(InFlight.Default),
  Layer.provide(TracingLive),
  Layer.provide(LoggingLive),
  Layer.provideMerge(AppConfig.Default)
)
