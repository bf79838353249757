/** Handlers of the OpenAI-compatible endpoints: OpenAI's formats in and out around the same Chat service. */
import { HttpApiBuilder } from "@effect/platform"
import { Clock, Effect, Either, Layer, Option } from "effect"
import { randomUUID } from "node:crypto"
import { Api } from "../Api.js"
import { AppConfig } from "../AppConfig.js"
import { BearerAuthLive, type Caller, CurrentCaller } from "../Auth.js"
import { Chat, type ChatEvent, type StreamingTurn, type SuppliedTurn, type TurnError, type TurnInput } from "../Chat.js"
import { ValidationError } from "../Domain/Errors.js"
import { type FinishReason, Generator } from "../Generator.js"
import { type EventStreamBody, eventStreamResponse, sseEvent } from "../Http/Sse.js"
import { type ChatCompletion, type ChatCompletionRequest, type CompletionMessage, ModelNotFound } from "./Api.js"
import { toOpenAiError } from "./Errors.js"

const invalid = (field: string, message: string) => new ValidationError({ field, message: `${field}: ${message}` })

const textOf = (content: CompletionMessage["content"]) =>
  typeof content === "string" ? content : content.map((part) => part.text).join("\n")

/** Requests for what Nexxi cannot do are refused, not silently answered without it. */
const unsupported = (request: ChatCompletionRequest): Option.Option<ValidationError> => {
  if ((request.tools?.length ?? 0) > 0) return Option.some(invalid("tools", "tool calling is not supported"))
  if ((request.functions?.length ?? 0) > 0)
    return Option.some(invalid("functions", "function calling is not supported"))
  if (request.logprobs === true) return Option.some(invalid("logprobs", "log probabilities are not supported"))
  if (request.response_format !== undefined && request.response_format.type !== "text") {
    return Option.some(invalid("response_format", 'only {"type": "text"} is supported'))
  }
  return Option.none()
}

/**
 * OpenAI's message list as a Chat turn: system (and developer) messages become the client's instructions; the
 * rest, with consecutive messages of one role joined, become earlier exchanges and the new user message, which
 * must come last. A conversation opened by the assistant gets an empty user message before it, as Mistral's chat
 * template needs exchanges that start with the user.
 */
export const toTurnInput = (
  caller: Caller,
  request: ChatCompletionRequest
): Either.Either<TurnInput, ValidationError> => {
  const refused = unsupported(request)
  if (Option.isSome(refused)) return Either.left(refused.value)
  const instructions = request.messages
    .filter((message) => message.role === "system" || message.role === "developer")
    .map((message) => textOf(message.content))
    .filter((text) => text.trim().length > 0)
  const dialogue: Array<{ role: "user" | "assistant"; content: string }> = []
  for (const message of request.messages) {
    if (message.role === "system" || message.role === "developer") continue
    const last = dialogue.at(-1)
    if (last?.role === message.role) last.content += `\n\n${textOf(message.content)}`
    else dialogue.push({ role: message.role, content: textOf(message.content) })
  }
  const last = dialogue.pop()
  if (last === undefined || last.role !== "user") {
    return Either.left(invalid("messages", "the last message must be the user's (role: user)"))
  }
  if (last.content.trim().length === 0) return Either.left(invalid("messages", "the last user message is blank"))
  if (dialogue[0]?.role === "assistant") dialogue.unshift({ role: "user", content: "" })
  const turns: Array<SuppliedTurn> = []
  for (let index = 0; index + 1 < dialogue.length; index += 2) {
    turns.push({ user: dialogue[index]!.content, assistant: dialogue[index + 1]!.content })
  }
  const maxNewTokens = request.max_completion_tokens ?? request.max_tokens
  const stop = typeof request.stop === "string" ? [request.stop] : request.stop
  return Either.right({
    caller,
    sessionId: Option.fromNullable(request.session_id),
    message: last.content,
    // With a session, its stored history is the conversation; without, what the client sent.
    ...(request.session_id === undefined ? { supplied: { turns, keepTranscript: request.store === true } } : {}),
    ...(instructions.length > 0 ? { instructions: instructions.join("\n\n") } : {}),
    options: {
      ...(maxNewTokens === undefined ? {} : { maxNewTokens }),
      ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
      ...(request.top_p === undefined ? {} : { topP: request.top_p }),
      ...(stop === undefined ? {} : { stop }),
      ...(request.seed === undefined ? {} : { seed: request.seed })
    }
  })
}

/** OpenAI has no "the model ended its reply" apart from a stop: an end of sequence is a stop too. */
const finishReasonOf = (reason: FinishReason) => (reason === "length" ? "length" : "stop")

interface CompletionHeader {
  readonly id: string
  readonly created: number
  readonly model: string
}

/** The `chat.completion.chunk` events of a streamed turn, `[DONE]` after the last; a failure ends with an error. */
const chunkEvents = (
  header: CompletionHeader,
  next: StreamingTurn["next"],
  includeUsage: boolean
): EventStreamBody<ChatEvent, TurnError> => {
  const chunkWith = (fields: object) =>
    sseEvent(JSON.stringify({ ...header, object: "chat.completion.chunk", system_fingerprint: null, ...fields }))
  const chunk = (delta: object, finishReason: string | null) =>
    chunkWith({
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      ...(includeUsage ? { usage: null } : {})
    })
  const usage = (event: Extract<ChatEvent, { _tag: "Finished" }>) =>
    chunkWith({
      choices: [],
      usage: {
        prompt_tokens: event.promptTokens,
        completion_tokens: event.completionTokens,
        total_tokens: event.tokensUsed
      }
    })
  return {
    next,
    opening: chunk({ role: "assistant", content: "" }, null),
    render: (event) =>
      event._tag === "Delta"
        ? chunk({ content: event.text }, null)
        : chunk({}, finishReasonOf(event.finishReason)) + (includeUsage ? usage(event) : ""),
    closing: sseEvent("[DONE]"),
    // OpenAI's SDKs read a `data: {"error": ...}` event as the failure of the stream.
    renderError: (detail) =>
      sseEvent(JSON.stringify(toOpenAiError(detail.type === "internal_error" ? 500 : 502, detail)))
  }
}

export const OpenAiHttpLive = HttpApiBuilder.group(Api, "openai", (handlers) =>
  Effect.gen(function* () {
    const chat = yield* Chat
    const generator = yield* Generator
    const { sseKeepAliveMs } = yield* AppConfig
    const startedAt = Math.floor((yield* Clock.currentTimeMillis) / 1000)

    /** The served model, or 404 as OpenAI answers for a model it does not have. */
    const servedModel = (requested: string) =>
      Effect.flatMap(generator.info, (info) =>
        requested === info.modelId
          ? Effect.succeed(info.modelId)
          : new ModelNotFound({
              message: `The model '${requested}' is not served here; this server serves '${info.modelId}'`
            })
      )

    return handlers
      .handle("chatCompletions", ({ payload }) =>
        Effect.gen(function* () {
          const model = yield* servedModel(payload.model)
          const input = yield* toTurnInput(yield* CurrentCaller, payload)
          const header: CompletionHeader = {
            id: `chatcmpl-${randomUUID().replaceAll("-", "")}`,
            created: Math.floor((yield* Clock.currentTimeMillis) / 1000),
            model
          }
          if (payload.stream === true) {
            const turn = yield* chat.stream(input)
            const includeUsage = payload.stream_options?.include_usage === true
            return yield* eventStreamResponse(chunkEvents(header, turn.next, includeUsage), sseKeepAliveMs)
          }
          const reply = yield* chat.reply(input)
          const completion: ChatCompletion = {
            ...header,
            object: "chat.completion",
            system_fingerprint: null,
            choices: [
              {
                index: 0,
                message: { role: "assistant", content: reply.message, refusal: null },
                logprobs: null,
                finish_reason: finishReasonOf(reply.finishReason)
              }
            ],
            usage: {
              prompt_tokens: reply.promptTokens,
              completion_tokens: reply.completionTokens,
              total_tokens: reply.tokensUsed
            },
            ...(payload.session_id === undefined ? {} : { session_id: reply.sessionId })
          }
          return completion
        })
      )
      .handle("listModels", () =>
        Effect.map(generator.info, (info) => ({
          object: "list" as const,
          data: [{ id: info.modelId, object: "model" as const, created: startedAt, owned_by: "nexxi" }]
        }))
      )
  })
).pipe(Layer.provide(BearerAuthLive))
