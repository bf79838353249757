/** Server-Sent Events responses: the chat streams of both APIs (Nexxi's and the OpenAI-compatible one). */
import { Sse } from "@effect/experimental"
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Cause, Effect, Option, Stream } from "effect"
import { type ErrorDetail, errorDetails } from "../Domain/Errors.js"
import { trackActiveStream } from "../Metrics.js"
import { currentRequestId } from "./RequestId.js"

/** One event; `data` is sent as it is (JSON, or OpenAI's `[DONE]`). */
export const sseEvent = (data: string, event = "message") =>
  Sse.encoder.write({ _tag: "Event", event, id: undefined, data })

/**
 * A failure after the response started can only be told in the stream: the events end with one event that
 * `render` makes of the error's detail (a failure that is not a client error is logged and told as an internal
 * error). Interruption passes through: the client is gone.
 */
export const endingWithError =
  (render: (detail: ErrorDetail) => string) =>
  <E extends { readonly _tag: string; readonly message: string }>(events: Stream.Stream<string, E>) =>
    Stream.catchAllCause(events, (cause) =>
      Cause.isInterruptedOnly(cause)
        ? Stream.failCause(cause)
        : Stream.fromEffect(
            Effect.gen(function* () {
              const request_id = yield* currentRequestId
              const failure = Cause.failureOption(cause)
              if (Option.isNone(failure)) yield* Effect.logError("Chat stream failed", cause)
              return render(
                Option.match(failure, {
                  onSome: (error) => ({ ...errorDetails(error), request_id }),
                  onNone: () => ({ type: "internal_error", message: "Internal error", request_id })
                })
              )
            })
          )
    )

const KEEP_ALIVE = ": keep-alive\n\n"

/**
 * A streaming response of already encoded events, counted in the active-streams gauge while it is open.
 *
 * Whenever it has been quiet for `keepAliveMs` a comment goes out, so that idle proxies do not close a connection
 * while the model thinks. The comment is written to the connection by a timer, between the events (each is one
 * write), rather than merged into the stream of events: merging races every event against a timer, which forks
 * fibers for each token and cost more than relaying the token itself.
 */
export const eventStreamResponse = <E>(events: Stream.Stream<string, E>, keepAliveMs: number) =>
  Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
    const connection = NodeHttpServerRequest.toServerResponse(request)
    let lastWrite = Date.now()
    const keepAlive = Effect.acquireRelease(
      Effect.sync(() =>
        setInterval(
          () => {
            if (Date.now() - lastWrite < keepAliveMs) return
            // Never before the response's head (the stream's own first write sends it), after its end, or into
            // a client that is not reading anyway.
            if (!connection.headersSent || connection.writableEnded || connection.writableNeedDrain) return
            lastWrite = Date.now()
            connection.write(KEEP_ALIVE)
          },
          Math.max(10, Math.floor(keepAliveMs / 2))
        ).unref()
      ),
      (timer) => Effect.sync(() => clearInterval(timer))
    )
    const body = events.pipe(
      Stream.mapChunks((chunk) => ((lastWrite = Date.now()), chunk)),
      Stream.encodeText
    )
    return HttpServerResponse.stream(Stream.unwrapScoped(Effect.as(Effect.zip(trackActiveStream, keepAlive), body)), {
      contentType: "text/event-stream",
      headers: { "cache-control": "no-cache", "x-accel-buffering": "no" }
    })
  })
