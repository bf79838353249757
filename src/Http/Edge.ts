/**
 * The edge of every HTTP request, before any route: a request id (echoed as `X-Request-Id` and on every log
 * line), rejection of bodies that cannot be right (not JSON: 415; larger than MAX_BODY_BYTES: 413, without
 * reading more than the limit), the access log line, HTTP metrics and in-flight tracking for graceful shutdown,
 * and the disconnection of clients that stop reading their response (`STREAM_WRITE_TIMEOUT_MS`).
 */
import { HttpApp, HttpIncomingMessage, HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Cause, Clock, Effect, Either, Exit, Metric, Option } from "effect"
import type { ServerResponse } from "node:http"
import { performance } from "node:perf_hooks"
import { ClientError, MalformedJson, UnsupportedMediaType, ValidationError } from "../Domain/Errors.js"
import { recordHttpRequest } from "../Metrics.js"
import { errorResponse, payloadTooLarge } from "./Errors.js"
import type { InFlight } from "./InFlight.js"
import { CurrentRequestId, requestIdFrom } from "./RequestId.js"
import type { RouteLookup } from "./Routes.js"

export interface EdgeOptions {
  readonly maxBodyBytes: number
  readonly lookup: (method: string, pathname: string) => RouteLookup
  readonly inFlight: InFlight
  /** How long a response may wait for a client that reads nothing before the connection is closed. */
  readonly writeTimeoutMs: number
}

/** nginx's code for "client closed the request": the log tells a disconnect from a server error. */
const CLIENT_CLOSED = 499

const clientDisconnects = Metric.counter("nexxi_chat_client_disconnects_total", {
  description: "Requests whose client went away before the response was complete (e.g. a stream closed early).",
  incremental: true
})

/** An HTTP/1.1 request without Host (Node's own check would answer it without the common error body). */
export class MalformedRequest extends ClientError<MalformedRequest>()(
  "MalformedRequest",
  400,
  "The request is not valid HTTP/1.1"
) {}

const stalledClients = Metric.counter("nexxi_http_stalled_clients_total", {
  description: "Connections closed because the client stopped reading its response for STREAM_WRITE_TIMEOUT_MS.",
  incremental: true
})

/**
 * Watches responses for clients that stopped reading. A response writes only as fast as its client reads (the
 * stream waits for `drain`), so such a client holds no more than the socket's buffers; but it would hold the
 * response, the session's lock and the model's request forever. One timer, running only while responses are open,
 * closes a connection whose written data has waited `timeoutMs` for the client.
 */
const makeWriteWatch = (timeoutMs: number) => {
  const stalledSince = new Map<ServerResponse, number | undefined>()
  const dropped = new WeakSet<ServerResponse>()
  let timer: ReturnType<typeof setInterval> | undefined
  const sweep = () => {
    const now = performance.now()
    for (const [response, since] of stalledSince) {
      if (!response.writableNeedDrain) stalledSince.set(response, undefined)
      else if (since === undefined) stalledSince.set(response, now)
      else if (now - since >= timeoutMs) {
        stalledSince.delete(response)
        dropped.add(response)
        response.destroy()
      }
    }
    if (stalledSince.size === 0) {
      clearInterval(timer)
      timer = undefined
    }
  }
  return {
    watch: (response: ServerResponse) => {
      if (response.writableEnded || response.destroyed) return
      stalledSince.set(response, undefined)
      response.once("close", () => stalledSince.delete(response))
      timer ??= setInterval(sweep, Math.min(1_000, Math.max(25, timeoutMs / 4))).unref()
    },
    dropped: (response: ServerResponse) => dropped.has(response)
  }
}

const isJson = (contentType: string) => {
  const mediaType = contentType.split(";")[0]!.trim().toLowerCase()
  return mediaType === "application/json" || (mediaType.startsWith("application/") && mediaType.endsWith("+json"))
}

/**
 * A JSON body is read here, up to the limit, so that an oversized chunked one gets a 413 instead of a reset
 * connection, and so that what no schema should see is refused first; handlers then read the buffered copy.
 */
const readBody = (request: HttpServerRequest.HttpServerRequest, maxBodyBytes: number) =>
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

/** Deeper than any payload of the API; deep enough nesting would overflow the stack of schema error reporting. */
const MAX_JSON_DEPTH = 64

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/** How deep arrays and objects nest in a JSON text, counted outside strings. */
const nestingExceeds = (text: string, limit: number) => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++
      else if (c === 0x22) inString = false
    } else if (c === 0x22) inString = true
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true
    } else if (c === 0x5d || c === 0x7d) depth--
  }
  return false
}

/** The body as text, or the client error it is: not UTF-8 (which would be decoded with replacement characters). */
const decodeBody = (body: Buffer): Either.Either<string, MalformedJson | ValidationError> => {
  let text: string
  try {
    text = utf8.decode(body)
  } catch {
    return Either.left(new MalformedJson({ message: "The body is not valid UTF-8" }))
  }
  return nestingExceeds(text, MAX_JSON_DEPTH)
    ? Either.left(new ValidationError({ message: `body: nests deeper than ${MAX_JSON_DEPTH} levels` }))
    : Either.right(text)
}

/** The same request, with its body already read into memory. */
const withBufferedBody = (request: HttpServerRequest.HttpServerRequest, body: Buffer, text: string) =>
  Object.create(request, {
    text: { get: () => Effect.succeed(text) },
    arrayBuffer: { get: () => Effect.succeed(body.buffer.slice(body.byteOffset, body.byteOffset + body.length)) }
  }) as HttpServerRequest.HttpServerRequest

/** Checks a request body before the API reads it: JSON only, no larger than the limit, UTF-8, not too deep. */
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
  if (!chunked && Number(contentLength) > maxBodyBytes) return payloadTooLarge(maxBodyBytes)
  return readBody(request, maxBodyBytes).pipe(
    Effect.matchEffect({
      onFailure: () => errorResponse(new MalformedJson({ message: "The request body could not be read" })),
      onSuccess: Option.match({
        onNone: () => payloadTooLarge(maxBodyBytes),
        onSome: (body) =>
          Either.match(decodeBody(body), {
            onLeft: (error) => errorResponse(error),
            onRight: (text) =>
              Effect.provideService(app, HttpServerRequest.HttpServerRequest, withBufferedBody(request, body, text))
          })
      })
    })
  )
}

export const edge = (options: EdgeOptions) => {
  const writes = makeWriteWatch(options.writeTimeoutMs)
  return (app: HttpApp.Default): HttpApp.Default =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
      const requestId = requestIdFrom(request.headers["x-request-id"])
      return handle(options, writes, app, request, requestId).pipe(
        Effect.locally(CurrentRequestId, requestId),
        Effect.annotateLogs("request_id", requestId)
      )
    })
}

const handle = (
  options: EdgeOptions,
  writes: ReturnType<typeof makeWriteWatch>,
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
    writes.watch(nodeResponse)

    const incoming = NodeHttpServerRequest.toIncomingMessage(request)
    const guarded =
      incoming.httpVersion === "1.1" && request.headers.host === undefined
        ? errorResponse(new MalformedRequest({ message: "An HTTP/1.1 request must have a Host header" }), {
            connection: "close"
          })
        : lookup._tag === "Matched"
          ? guardBody(request, options.maxBodyBytes, app)
          : app
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
    if (writes.dropped(nodeResponse)) {
      yield* Metric.increment(stalledClients)
      yield* Effect.logWarning(`Disconnected a client that read nothing for ${options.writeTimeoutMs} ms`)
    }
    yield* Effect.logInfo("request").pipe(
      Effect.annotateLogs({ method: request.method, route, status, duration_ms: Math.round(durationMs * 10) / 10 })
    )
    return yield* exit
  })
