/** The chat endpoints of the contract: `/v1/chat`, `/v1/chat/stream` and the session endpoints. */
import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { ApiKeyAuth } from "../Auth.js"
import {
  asErrorBody,
  MalformedJson,
  PayloadTooLarge,
  ServiceUnavailable,
  UnsupportedMediaType,
  ValidationError,
  withErrors
} from "../Domain/Errors.js"
import { SessionId, SessionMessage } from "../Domain/Session.js"
import { MessageText } from "../Domain/Text.js"
import { GeneratorErrors } from "../Generator.js"
import { RateLimitMiddleware } from "../Http/RateLimit.js"
import { ContentBlocked } from "../Safety.js"
import { SessionBusy, SessionNotFound, SessionUnavailable } from "../Session.js"
import { StorageUnavailable } from "../Storage.js"

/** Unknown fields are an error, not silently dropped: a typo in a field name should not go unnoticed. */
const strict = { parseOptions: { onExcessProperty: "error" } } as const

export const ChatRequest = Schema.Struct({
  session_id: Schema.optional(SessionId).annotations({
    description: "Continue this conversation; omit it to start a new one"
  }),
  message: MessageText,
  stream: Schema.optional(Schema.Boolean).annotations({
    description: "Answer with the same Server-Sent Events as /v1/chat/stream"
  })
}).annotations({ identifier: "ChatRequest", ...strict })

export const StreamRequest = ChatRequest.omit("stream").annotations({ identifier: "StreamRequest", ...strict })

export const ChatResponse = Schema.Struct({
  session_id: SessionId,
  message: Schema.String.annotations({ description: "The assistant's reply" }),
  model: Schema.String,
  tokens_used: Schema.Int.annotations({ description: "Prompt + completion tokens of this turn" }),
  response_time_ms: Schema.Number,
  timestamp: Schema.String.annotations({ description: "ISO 8601, UTC" })
}).annotations({ identifier: "ChatResponse" })

/** The data of each Server-Sent Event of a chat stream. */
export const StreamChunk = Schema.Struct({
  session_id: SessionId,
  delta: Schema.String,
  finished: Schema.Boolean,
  tokens_used: Schema.optional(Schema.Int),
  model: Schema.optional(Schema.String),
  finish_reason: Schema.optional(Schema.String)
}).annotations({ identifier: "StreamChunk" })
export type StreamChunk = typeof StreamChunk.Type

export const SessionRef = Schema.Struct({ session_id: SessionId }).annotations({
  identifier: "SessionRef",
  ...strict
})

export const SessionTranscript = Schema.Struct({
  session_id: SessionId,
  messages: Schema.Array(SessionMessage)
}).annotations({ identifier: "SessionTranscript" })

const EventStream = HttpApiSchema.Text({ contentType: "text/event-stream" }).annotations({
  description:
    "Server-Sent Events; each event's data is a JSON StreamChunk, the last has finished: true. " +
    "A failure after the stream started arrives as an `error` event with an ErrorBody."
})

/** What the HTTP layer answers for a body that cannot be read as JSON, before the endpoint runs. */
const bodyErrors = [MalformedJson, PayloadTooLarge, UnsupportedMediaType] as const

/** What a chat turn can answer instead of a reply (the OpenAI-compatible endpoint's too). */
export const turnErrors = [
  ...bodyErrors,
  ContentBlocked,
  SessionNotFound,
  SessionBusy,
  SessionUnavailable,
  StorageUnavailable,
  ...GeneratorErrors
] as const

export class ChatApi extends HttpApiGroup.make("chat")
  .add(
    withErrors(
      HttpApiEndpoint.post("chat", "/v1/chat").setPayload(ChatRequest).addSuccess(ChatResponse),
      ...turnErrors
    ).annotate(OpenApi.Summary, "Send a message and receive the whole reply (or a stream with stream: true)")
  )
  .add(
    withErrors(
      HttpApiEndpoint.post("chatStream", "/v1/chat/stream").setPayload(StreamRequest).addSuccess(EventStream),
      ...turnErrors
    ).annotate(OpenApi.Summary, "Send a message and receive the reply token by token (SSE)")
  )
  .add(
    withErrors(
      HttpApiEndpoint.del("clearSession", "/v1/chat/session")
        .setPayload(SessionRef)
        .addSuccess(HttpApiSchema.NoContent),
      ...bodyErrors,
      SessionNotFound,
      SessionBusy,
      SessionUnavailable,
      StorageUnavailable
    ).annotate(OpenApi.Summary, "Clear a conversation")
  )
  .add(
    withErrors(
      HttpApiEndpoint.get("getSession", "/v1/chat/session/:session_id")
        .setPath(Schema.Struct({ session_id: SessionId }))
        .addSuccess(SessionTranscript),
      SessionNotFound,
      SessionUnavailable
    ).annotate(OpenApi.Summary, "A conversation's messages")
  )
  .addError(asErrorBody(ValidationError))
  .addError(asErrorBody(ServiceUnavailable))
  // Added first, so that it runs inside ApiKeyAuth: rate limits are per key.
  .middleware(RateLimitMiddleware)
  .middleware(ApiKeyAuth)
  .annotate(OpenApi.Title, "Chat")
  .annotate(OpenApi.Description, "Conversations with the model. Every endpoint needs the X-API-Key header.") {}
