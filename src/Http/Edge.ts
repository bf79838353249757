/**
 * The edge of every HTTP request, before any route: a request id (echoed as `X-Request-Id` and on every log
 * line), rejection of bodies that cannot be right (not JSON: 415; larger than MAX_BODY_BYTES: 413, without
 * reading more than the limit), the access log line, HTTP metrics and in-flight tracking for graceful shutdown.
 */
import { HttpApp, HttpIncomingMessage, HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Cause, Clock, Effect, Exit, Metric, Option } from "effect"
import { MalformedJson, UnsupportedMediaType } from "../Domain/Errors.js"
import { recordHttpRequest } from "../Metrics.js"
import { errorResponse, payloadTooLarge } from "./Errors.js"
import type { InFlight } from "./InFlight.js"
import { CurrentRequestId, requestIdFrom } from "./RequestId.js"
import type { RouteLookup } from "./Routes.js"

export interface EdgeOptions {
  readonly maxBodyBytes: number
  readonly lookup: (method: string, pathname: string) => RouteLookup
  readonly inFlight: InFlight
}

/** nginx's code for "client closed the request": the log tells a disconnect from a server error. */
const CLIENT_CLOSED = 499

const clientDisconnects = Metric.counter("nexxi_chat_client_disconnects_total", {
  description: "Requests whose client went away before the response was complete (e.g. a stream closed early).",
  incremental: true
})

const isJson = (contentType: string) => {
  const mediaType = contentType.split(";")[0]!.trim().toLowerCase()
  return mediaType === "application/json" || (mediaType.startsWith("application/") && mediaType.endsWith("+json"))
}

/**
 * A body sent without Content-Length (chunked) is read here, up to the limit, so that an oversized one gets a 413
 * instead of a reset connection; handlers then read the buffered copy.
 */
const readChunkedBody = (request: HttpServerRequest.HttpServerRequest, maxBodyBytes: number) =>
  Effect.async<Option.Option<Buffer>, HttpServerError.RequestError>((resume) => {
    const incoming = NodeHttpServerRequest.toIncomingMessage(request)
    const chunks: Array<Buffer> = []
    let size = 0
    const stop = () => {
      incoming.off("data", onData).off("end", onEnd).off("error", onError)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size <= maxBodyBytes) return void chunks.push(chunk)
      stop()
      incoming.pause()
      resume(Effect.succeed(Option.none()))
    }
    const onEnd = () => {
      stop()
      resume(Effect.succeed(Option.some(Buffer.concat(chunks))))
    }
    const onError = (cause: Error) => {
      stop()
      resume(Effect.fail(new HttpServerError.RequestError({ request, reason: "Transport", cause })))
    }
    incoming.on("data", onData).on("end", onEnd).on("error", onError)
    return Effect.sync(stop)
  })

/** The same request, with its body already read into memory. */
const withBufferedBody = (request: HttpServerRequest.HttpServerRequest, body: Buffer) =>
  Object.create(request, {
    text: { get: () => Effect.succeed(body.toString("utf8")) },
    arrayBuffer: { get: () => Effect.succeed(body.buffer.slice(body.byteOffset, body.byteOffset + body.length)) }
  }) as HttpServerRequest.HttpServerRequest

/** Checks a request body before the API reads it: JSON only, and no larger than the limit. */
const guardBody = (request: HttpServerRequest.HttpServerRequest, maxBodyBytes: number, app: HttpApp.Default) => {
  const contentLength = request.headers["content-length"]
  const chunked = contentLength === undefined && request.headers["transfer-encoding"] !== undefined
  if (!chunked && Number(contentLength ?? 0) === 0) return app
  const contentType = request.headers["content-type"] ?? ""
  if (!isJson(contentType)) {
    return errorResponse(
      new UnsupportedMediaType({
        message: `Send the body as application/json${contentType ? `, not ${contentType}` : ""}`
      })
    )
  }
  if (!chunked) return Number(contentLength) > maxBodyBytes ? payloadTooLarge(maxBodyBytes) : app
  return readChunkedBody(request, maxBodyBytes).pipe(
    Effect.matchEffect({
      onFailure: () => errorResponse(new MalformedJson({ message: "The request body could not be read" })),
      onSuccess: Option.match({
        onNone: () => payloadTooLarge(maxBodyBytes),
        onSome: (body) =>
          Effect.provideService(app, HttpServerRequest.HttpServerRequest, withBufferedBody(request, body))
      })
    })
  )
}

export const edge =
  (options: EdgeOptions) =>
  (app: HttpApp.Default): HttpApp.Default =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
      const requestId = requestIdFrom(request.headers["x-request-id"])
      return handle(options, app, request, requestId).pipe(
        Effect.locally(CurrentRequestId, requestId),
        Effect.annotateLogs("request_id", requestId)
      )
    })

const handle = (
  options: EdgeOptions,
  app: HttpApp.Default,
  request: HttpServerRequest.HttpServerRequest,
  requestId: string
) =>
  Effect.gen(function* () {
    const startNanos = yield* Clock.currentTimeNanos
    const pathname = new URL(request.url, "http://nexxi").pathname
    const lookup = options.lookup(request.method, pathname)
    const route = lookup._tag === "NotFound" ? "unmatched" : lookup.route

    const withEdgeHeaders = (response: HttpServerResponse.HttpServerResponse) =>
      HttpServerResponse.setHeaders(response, {
        "x-request-id": requestId,
        // While draining, ask keep-alive clients to send their next request elsewhere.
        ...(options.inFlight.isDraining() ? { connection: "close" } : {})
      })
    // The app's responses are written before this middleware returns: their headers go in just before.
    yield* HttpApp.appendPreResponseHandler((_, response) => Effect.succeed(withEdgeHeaders(response)))

    // A client that leaves mid-stream does not always fail this fiber (the stream may just end): the connection
    // closing before the response finished tells.
    let clientLeft = false
    const nodeResponse = NodeHttpServerRequest.toServerResponse(request)
    nodeResponse.once("close", () => (clientLeft ||= !nodeResponse.writableFinished))

    const guarded = lookup._tag === "Matched" ? guardBody(request, options.maxBodyBytes, app) : app
    const exit = yield* guarded.pipe(
      // Responses made here rather than by the app are not written yet: they get the headers now.
      Effect.map(withEdgeHeaders),
      HttpIncomingMessage.withMaxBodySize(Option.some(options.maxBodyBytes)),
      options.inFlight.track,
      Effect.exit
    )

    const status = Exit.match(exit, {
      onSuccess: (response) => (clientLeft ? CLIENT_CLOSED : response.status),
      onFailure: (cause) => (Cause.isInterruptedOnly(cause) ? CLIENT_CLOSED : 500)
    })
    const durationMs = Number((yield* Clock.currentTimeNanos) - startNanos) / 1e6
    yield* recordHttpRequest({ route, method: request.method, status, durationMs })
    if (status === CLIENT_CLOSED) yield* Metric.increment(Metric.tagged(clientDisconnects, "route", route))
    yield* Effect.logInfo("request").pipe(
      Effect.annotateLogs({ method: request.method, route, status, duration_ms: Math.round(durationMs * 10) / 10 })
    )
    return yield* exit
  })
