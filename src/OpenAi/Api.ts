/**
 * The OpenAI-compatible endpoints: `POST /v1/chat/completions` (Chat Completions, whole or streamed, as OpenAI's
 * SDKs call it) and `GET /v1/models`. They run the same Chat pipeline as `/v1/chat`; only the formats differ.
 */
import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { BearerAuth } from "../Auth.js"
import { turnErrors } from "../Chat/Api.js"
import { ClientError, ServiceUnavailable, Unauthorized, ValidationError } from "../Domain/Errors.js"
import { SessionId } from "../Domain/Session.js"
import { SafeText } from "../Domain/Text.js"
import { GeneratorErrors } from "../Generator.js"
import { RateLimitMiddleware } from "../Http/RateLimit.js"
import { withOpenAiErrors } from "./Errors.js"

export class ModelNotFound extends ClientError<ModelNotFound>()(
  "ModelNotFound",
  404,
  "The model is not served here (see GET /v1/models)"
) {}

const TextPart = Schema.Struct({ type: Schema.Literal("text"), text: SafeText }).annotations({
  identifier: "TextContentPart"
})

export const MessageContent = Schema.Union(SafeText, Schema.Array(TextPart)).annotations({
  description: "Text, or an array of text parts (other kinds of part are not supported)"
})

export const CompletionMessage = Schema.Struct({
  role: Schema.Literal("system", "developer", "user", "assistant"),
  content: MessageContent,
  name: Schema.optional(Schema.String)
}).annotations({ identifier: "CompletionMessage" })
export type CompletionMessage = typeof CompletionMessage.Type

const nullable = <S extends Schema.Schema.Any>(schema: S) => Schema.optionalWith(schema, { nullable: true })

/**
 * OpenAI's request, as far as Nexxi serves it. Fields Nexxi does not use (penalties, `metadata`, ...) are
 * accepted and ignored, as OpenAI-compatible servers do; fields asking for what Nexxi cannot do (tools, several
 * choices, log probabilities, JSON mode) are refused with a clear error rather than silently not honoured.
 */
export const ChatCompletionRequest = Schema.Struct({
  model: Schema.String.annotations({ description: "The served model's id (GET /v1/models)" }),
  messages: Schema.Array(CompletionMessage).pipe(Schema.minItems(1)),
  stream: nullable(Schema.Boolean),
  stream_options: nullable(Schema.Struct({ include_usage: Schema.optional(Schema.Boolean) })),
  max_tokens: nullable(Schema.Int.pipe(Schema.positive())),
  max_completion_tokens: nullable(Schema.Int.pipe(Schema.positive())),
  temperature: nullable(Schema.Number.pipe(Schema.between(0, 2))),
  top_p: nullable(Schema.Number.pipe(Schema.greaterThan(0), Schema.lessThanOrEqualTo(1))),
  stop: nullable(Schema.Union(Schema.String, Schema.Array(Schema.String).pipe(Schema.maxItems(4)))),
  seed: nullable(Schema.Int),
  n: nullable(Schema.Literal(1).annotations({ message: () => "only one choice (n: 1) is supported" })),
  user: nullable(Schema.String),
  store: nullable(Schema.Boolean).annotations({
    description: "Keep this stateless turn's transcript in /v1/conversations (its usage is always kept)"
  }),
  session_id: nullable(SessionId).annotations({
    description: "Nexxi's extension: continue this stored session; its history replaces earlier messages sent"
  }),
  tools: nullable(Schema.Array(Schema.Unknown)),
  functions: nullable(Schema.Array(Schema.Unknown)),
  logprobs: nullable(Schema.Boolean),
  response_format: nullable(Schema.Struct({ type: Schema.String }))
}).annotations({ identifier: "ChatCompletionRequest" })
export type ChatCompletionRequest = typeof ChatCompletionRequest.Type

export const FinishReason = Schema.Literal("stop", "length")

export const Usage = Schema.Struct({
  prompt_tokens: Schema.Int,
  completion_tokens: Schema.Int,
  total_tokens: Schema.Int
}).annotations({ identifier: "CompletionUsage" })

export const ChatCompletion = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("chat.completion"),
  created: Schema.Int.annotations({ description: "Unix time, seconds" }),
  model: Schema.String,
  system_fingerprint: Schema.Null,
  choices: Schema.Tuple(
    Schema.Struct({
      index: Schema.Literal(0),
      message: Schema.Struct({
        role: Schema.Literal("assistant"),
        content: Schema.String,
        refusal: Schema.Null
      }),
      logprobs: Schema.Null,
      finish_reason: FinishReason
    })
  ),
  usage: Usage,
  session_id: Schema.optional(SessionId)
}).annotations({
  identifier: "ChatCompletion",
  description:
    "With stream: true the answer is Server-Sent Events instead: `chat.completion.chunk` objects, then `data: [DONE]`"
})
export type ChatCompletion = typeof ChatCompletion.Type

export const ModelList = Schema.Struct({
  object: Schema.Literal("list"),
  data: Schema.Array(
    Schema.Struct({
      id: Schema.String,
      object: Schema.Literal("model"),
      created: Schema.Int,
      owned_by: Schema.String
    })
  )
}).annotations({ identifier: "ModelList" })

const commonErrors = [Unauthorized, ServiceUnavailable] as const

const completionErrors = [...commonErrors, ValidationError, ModelNotFound, ...turnErrors] as const

export class OpenAiApi extends HttpApiGroup.make("openai")
  .add(
    withOpenAiErrors(
      HttpApiEndpoint.post("chatCompletions", "/v1/chat/completions")
        .setPayload(ChatCompletionRequest)
        .addSuccess(ChatCompletion),
      ...completionErrors
    ).annotate(OpenApi.Summary, "OpenAI-compatible Chat Completions (whole reply, or SSE chunks with stream: true)")
  )
  .add(
    withOpenAiErrors(
      HttpApiEndpoint.get("listModels", "/v1/models").addSuccess(ModelList),
      ...commonErrors,
      ...GeneratorErrors
    ).annotate(OpenApi.Summary, "The served model, in OpenAI's format")
  )
  .middleware(RateLimitMiddleware)
  .middleware(BearerAuth)
  .annotate(OpenApi.Title, "OpenAI-compatible")
  .annotate(
    OpenApi.Description,
    "For OpenAI's SDKs and tools: set their base URL to this server's /v1 and their API key to a Nexxi key. " +
      "Errors use OpenAI's error shape with Nexxi's statuses."
  ) {}
