/** Server-Sent Events responses: the chat streams of both APIs (Nexxi's and the OpenAI-compatible one). */
import { Sse } from "@effect/experimental"
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Cause, type Chunk, Effect, Option, Stream } from "effect"
import { type ErrorDetail, errorDetails } from "../Domain/Errors.js"
import { trackActiveStream } from "../Metrics.js"
import { currentRequestId } from "./RequestId.js"
import { acquireSync } from "../lib/finalizer.js"

/** One event; `data` is sent as it is (JSON, or OpenAI's `[DONE]`). */
export const sseEvent = (data: string, event = "message") =>
  Sse.encoder.write({ _tag: "Event", event, id: undefined, data })

const KEEP_ALIVE = ": keep-alive\n\n"

const encoder = new TextEncoder()

/** What a streamed turn's response is made of: its events, pulled as the client reads, and how each is written. */
export interface EventStreamBody<A, E> {
  /** The next events, as many as are ready; fails with `None` after the last. */
  readonly next: Effect.Effect<Chunk.Chunk<A>, Option.Option<E>>
  /** One event as SSE text (`sseEvent`, or several of them). */
  readonly render: (event: A) => string
  /** SSE text before the first events and after the last (OpenAI's opening chunk and `[DONE]`). */
  readonly opening?: string
  readonly closing?: string
  /**
   * A failure after the response started can only be told in the stream: it ends with the one event `renderError`
   * makes of the error's detail (a failure that is not a client error is logged and told as an internal error).
   */
  readonly renderError: (detail: ErrorDetail) => string
}

/**
 * The body's next bytes: the events of one pull, written at once (one write however many tokens came together).
 * Interruption passes through: the client is gone.
 */
const bodyPull = <A, E extends { readonly _tag: string; readonly message: string }>(body: EventStreamBody<A, E>) => {
  let prefix = body.opening ?? ""
  let ended = false
  const text = (value: string) => {
    const bytes = encoder.encode(prefix + value)
    prefix = ""
    return bytes
  }
  const failed = (cause: Cause.Cause<Option.Option<E>>) =>
    Effect.gen(function* () {
      ended = true
      const failure = Cause.failureOption(cause)
      if (Option.isSome(failure) && Option.isNone(failure.value)) {
        if (body.closing === undefined && prefix === "") return yield* Effect.fail(Option.none<never>())
        return text(body.closing ?? "")
      }
      const request_id = yield* currentRequestId
      if (Option.isNone(failure)) yield* Effect.logError("Chat stream failed", cause)
      return text(
        body.renderError(
          Option.match(Option.flatten(failure), {
            onSome: (error) => ({ ...errorDetails(error), request_id }),
            onNone: () => ({ type: "internal_error", message: "Internal error", request_id })
          })
        )
      )
    })
  // A pull that made no text (tokens held back by the output redactor) is followed by the next: nothing is written.
  const pull: Effect.Effect<Uint8Array, Option.Option<never>> = Effect.suspend(() =>
    ended
      ? Effect.fail(Option.none<never>())
      : body.next.pipe(
          Effect.flatMap((events) => {
            let written = ""
            for (const event of events) written += body.render(event)
            return written === "" && prefix === "" ? pull : Effect.succeed(text(written))
          }),
          Effect.catchAllCause((cause) =>
            // Interrupted only: the cause holds no failure.
            Cause.isInterruptedOnly(cause) ? Effect.failCause(cause as Cause.Cause<never>) : failed(cause)
          )
        )
  )
  return pull
}

/**
 * A streaming response of a turn's events, counted in the active-streams gauge while it is open. The body is one
 * pull from the turn to the connection: a stream stage per step (mapping, encoding, ending with an error) would
 * cost each token a pass through the stream machinery, and each open stream their state.
 *
 * Whenever it has been quiet for `keepAliveMs` a comment goes out, so that idle proxies do not close a connection
 * while the model thinks. The comment is written to the connection by a timer, between the events (each is one
 * write), rather than merged into the stream of events: merging races every event against a timer, which forks
 * fibers for each token and cost more than relaying the token itself.
 */
export const eventStreamResponse = <A, E extends { readonly _tag: string; readonly message: string }>(
  body: EventStreamBody<A, E>,
  keepAliveMs: number
) =>
  Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
    const connection = NodeHttpServerRequest.toServerResponse(request)
    let lastWrite = Date.now()
    const keepAlive = acquireSync(
      () =>
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
        ).unref(),
      (timer) => Effect.sync(() => clearInterval(timer))
    )
    const bytes = Effect.map(bodyPull(body), (chunk) => ((lastWrite = Date.now()), chunk))
    return HttpServerResponse.stream(
      Stream.unwrapScoped(Effect.as(Effect.zip(trackActiveStream, keepAlive), Stream.repeatEffectOption(bytes))),
      {
        contentType: "text/event-stream",
        headers: { "cache-control": "no-cache", "x-accel-buffering": "no" }
      }
    )
  })
