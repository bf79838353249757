/** Handlers of the chat endpoints: HTTP in and out around the Chat service. */
import { HttpApiBuilder } from "@effect/platform"
import { Effect, Layer, Option } from "effect"
import { Api } from "../Api.js"
import { AppConfig } from "../AppConfig.js"
import { ApiKeyAuthLive, CurrentCaller } from "../Auth.js"
import { Chat, type ChatEvent, type StreamingTurn } from "../Chat.js"
import type { SessionId } from "../Domain/Session.js"
import { eventStreamResponse, sseEvent } from "../Http/Sse.js"
import type { StreamChunk } from "./Api.js"

const toChunk = (sessionId: SessionId, event: ChatEvent): StreamChunk =>
  event._tag === "Delta"
    ? { session_id: sessionId, delta: event.text, finished: false }
    : {
        session_id: sessionId,
        delta: "",
        finished: true,
        tokens_used: event.tokensUsed,
        model: event.model,
        finish_reason: event.finishReason
      }

const sseResponse = (turn: StreamingTurn, keepAliveMs: number) =>
  eventStreamResponse(
    {
      next: turn.next,
      render: (event) => sseEvent(JSON.stringify(toChunk(turn.sessionId, event))),
      renderError: (detail) => sseEvent(JSON.stringify({ error: detail }), "error")
    },
    keepAliveMs
  )

export const ChatHttpLive = HttpApiBuilder.group(Api, "chat", (handlers) =>
  Effect.gen(function* () {
    const chat = yield* Chat
    const { sseKeepAliveMs } = yield* AppConfig
    const streamed = (payload: { readonly session_id?: SessionId | undefined; readonly message: string }) =>
      Effect.gen(function* () {
        const caller = yield* CurrentCaller
        const turn = yield* chat.stream({
          caller,
          sessionId: Option.fromNullable(payload.session_id),
          message: payload.message
        })
        return yield* sseResponse(turn, sseKeepAliveMs)
      })

    return handlers
      .handle("chat", ({ payload }) =>
        payload.stream === true
          ? streamed(payload)
          : Effect.gen(function* () {
              const caller = yield* CurrentCaller
              const reply = yield* chat.reply({
                caller,
                sessionId: Option.fromNullable(payload.session_id),
                message: payload.message
              })
              return {
                session_id: reply.sessionId,
                message: reply.message,
                model: reply.model,
                tokens_used: reply.tokensUsed,
                response_time_ms: reply.responseTimeMs,
                timestamp: reply.timestamp
              }
            })
      )
      .handle("chatStream", ({ payload }) => streamed(payload))
      .handle("clearSession", ({ payload }) =>
        Effect.flatMap(CurrentCaller, (caller) => chat.clear(caller, payload.session_id))
      )
      .handle("getSession", ({ path }) =>
        Effect.gen(function* () {
          const caller = yield* CurrentCaller
          const messages = yield* chat.transcript(caller, path.session_id)
          return { session_id: path.session_id, messages }
        })
      )
  })
).pipe(Layer.provide(ApiKeyAuthLive))
