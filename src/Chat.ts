/**
 * Chat: one conversation turn through the whole pipeline,
 *
 *   safety → session (history) → generator (tokens) → session + storage (the turn is kept)
 *
 * for both the whole-reply and the streaming endpoints. A turn is saved once: completed, or — when the client
 * goes away, the server shuts down or the model fails mid-reply — with the partial reply marked interrupted.
 */
import { Chunk, Clock, Data, DateTime, Effect, Option, Stream } from "effect"
import { randomUUID } from "node:crypto"
import { AppConfig } from "./AppConfig.js"
import type { Caller } from "./Auth.js"
import { ValidationError } from "./Domain/Errors.js"
import { ChatMessage, type SessionId } from "./Domain/Session.js"
import {
  type Completed,
  type FinishReason,
  type GenerationRequest,
  Generator,
  type GeneratorError,
  type PromptMessage
} from "./Generator.js"
import { currentRequestId } from "./Http/RequestId.js"
import { ContentBlocked, Safety } from "./Safety.js"
import { Session, SessionNotFound, type SessionUnavailable } from "./Session.js"
import { Storage, type StorageUnavailable } from "./Storage.js"

export interface TurnInput {
  readonly caller: Caller
  readonly sessionId: Option.Option<SessionId>
  readonly message: string
}

export type ChatEvent = Data.TaggedEnum<{
  Delta: { readonly text: string }
  Finished: { readonly tokensUsed: number; readonly model: string; readonly finishReason: FinishReason }
}>
export const ChatEvent = Data.taggedEnum<ChatEvent>()
type Finished = Extract<ChatEvent, { _tag: "Finished" }>

export type TurnError =
  ValidationError | ContentBlocked | SessionNotFound | SessionUnavailable | StorageUnavailable | GeneratorError

export interface ChatReply {
  readonly sessionId: SessionId
  readonly message: string
  readonly model: string
  readonly tokensUsed: number
  readonly responseTimeMs: number
  readonly timestamp: string
}

/** A streaming turn whose first event (or failure) has already arrived: errors before it are plain HTTP errors. */
export interface StreamingTurn {
  readonly sessionId: SessionId
  readonly events: Stream.Stream<ChatEvent, TurnError>
}

const elapsedMs = (startNanos: bigint) =>
  Effect.map(Clock.currentTimeNanos, (now) => Math.round(Number(now - startNanos) / 1e5) / 10)

export class Chat extends Effect.Service<Chat>()("nexxi/Chat", {
  effect: Effect.gen(function* () {
    const config = yield* AppConfig
    const safety = yield* Safety
    const session = yield* Session
    const generator = yield* Generator
    const storage = yield* Storage

    const checkLength = (message: string) => {
      const length = [...message].length
      return length > config.maxMessageChars
        ? Effect.fail(
            new ValidationError({
              field: "message",
              message: `message: must be at most ${config.maxMessageChars} characters, got ${length}`
            })
          )
        : Effect.void
    }

    /** Everything before the model: validation, safety, and the conversation so far. */
    const prepare = (input: TurnInput) =>
      Effect.gen(function* () {
        yield* checkLength(input.message)
        const verdict = yield* safety.inspect(input.message)
        if (verdict.action === "block") {
          const categories = Object.keys(verdict.categories)
          return yield* new ContentBlocked({ message: "The message was blocked by the safety filter", categories })
        }
        const owner = input.caller.keyId
        const sessionId = Option.getOrElse(input.sessionId, () => randomUUID() as SessionId)
        const history = yield* Option.match(input.sessionId, {
          onNone: () => Effect.succeed<ReadonlyArray<ChatMessage>>([]),
          onSome: (id) =>
            Effect.flatMap(session.history(owner, id), (found) =>
              Option.match(found, {
                onNone: () => new SessionNotFound({ message: `No session ${id}` }),
                onSome: Effect.succeed
              })
            )
        })
        const messages: Array<PromptMessage> = [
          { role: "system", content: config.systemPrompt },
          ...history.map(({ role, content }) => ({ role, content })),
          { role: "user", content: input.message }
        ]
        const request: GenerationRequest = { messages, maxNewTokens: config.maxNewTokens }
        const userMessage = new ChatMessage({ role: "user", content: input.message, created_at: yield* DateTime.now })
        return { owner, sessionId, request, userMessage }
      }).pipe(Effect.withSpan("Chat.prepare"))

    /** The turn's events; the turn is saved when the reply completes, or as interrupted if it ends early. */
    const run = (input: TurnInput) =>
      Effect.gen(function* () {
        const startNanos = yield* Clock.currentTimeNanos
        const { owner, sessionId, request, userMessage } = yield* prepare(input)
        const { modelId } = yield* generator.info
        const requestId = yield* currentRequestId
        let reply = ""
        let firstTokenMs: Option.Option<number> = Option.none()
        let saved = false

        const save = (completion: Completed | undefined) =>
          Effect.gen(function* () {
            saved = true
            const interrupted = completion === undefined
            const assistant = new ChatMessage({
              role: "assistant",
              content: reply,
              created_at: yield* DateTime.now,
              interrupted
            })
            yield* session.append(owner, sessionId, [userMessage, assistant])
            yield* storage.recordTurn({
              requestId,
              owner,
              sessionId,
              model: modelId,
              userMessage,
              reply: assistant,
              finishReason: completion?.finishReason ?? "interrupted",
              promptTokens: completion?.promptTokens ?? 0,
              completionTokens: completion?.completionTokens ?? 0,
              timeToFirstTokenMs: firstTokenMs,
              durationMs: yield* elapsedMs(startNanos)
            })
          }).pipe(Effect.withSpan("Chat.saveTurn"))

        const events = generator.stream(request).pipe(
          Stream.mapEffect((chunk) =>
            Effect.gen(function* () {
              if (chunk._tag === "Completed") {
                yield* save(chunk)
                const tokensUsed = chunk.promptTokens + chunk.completionTokens
                return ChatEvent.Finished({ tokensUsed, model: modelId, finishReason: chunk.finishReason })
              }
              if (Option.isNone(firstTokenMs)) firstTokenMs = Option.some(yield* elapsedMs(startNanos))
              reply += chunk.text
              return ChatEvent.Delta({ text: chunk.text })
            })
          ),
          // A reply cut short (client gone, shutdown, model failure) is still part of the conversation; one that
          // never started is not. The stream may end by interruption or by its scope closing: either way, here.
          Stream.ensuring(
            Effect.suspend(() =>
              saved || reply.length === 0
                ? Effect.void
                : save(undefined).pipe(
                    Effect.catchAll((error) => Effect.logError("Could not save an interrupted turn", error))
                  )
            )
          )
        )
        return { sessionId, startNanos, events: events as Stream.Stream<ChatEvent, TurnError> }
      })

    return {
      /** The whole reply at once. */
      reply: (input: TurnInput): Effect.Effect<ChatReply, TurnError> =>
        Effect.gen(function* () {
          const { sessionId, startNanos, events } = yield* run(input)
          let message = ""
          let finished: Finished | undefined
          yield* Stream.runForEach(events, (event) =>
            Effect.sync(() => {
              if (event._tag === "Delta") message += event.text
              else finished = event
            })
          )
          if (finished === undefined) return yield* Effect.die(new Error("generation ended without completion"))
          return {
            sessionId,
            message,
            model: finished.model,
            tokensUsed: finished.tokensUsed,
            responseTimeMs: yield* elapsedMs(startNanos),
            timestamp: DateTime.formatIso(yield* DateTime.now)
          }
        }).pipe(Effect.withSpan("Chat.reply")),

      /** The reply as events. Succeeds once the first event arrived, so early failures keep their HTTP status. */
      stream: (input: TurnInput) =>
        Effect.gen(function* () {
          const { sessionId, events } = yield* run(input)
          // Pull the first events within the request's scope; the rest is pulled as the client reads.
          const pull = yield* Stream.toPull(events)
          const first = yield* Effect.catchAll(pull, (end) =>
            Option.match(end, { onNone: () => Effect.succeed(Chunk.empty<ChatEvent>()), onSome: Effect.fail })
          )
          const turn: StreamingTurn = {
            sessionId,
            events: Stream.concat(Stream.fromChunk(first), Stream.repeatEffectChunkOption(pull))
          }
          return turn
        }).pipe(Effect.withSpan("Chat.stream")),

      transcript: (caller: Caller, id: SessionId) =>
        Effect.flatMap(session.history(caller.keyId, id), (found) =>
          Option.match(found, {
            onNone: () => new SessionNotFound({ message: `No session ${id}` }),
            onSome: Effect.succeed
          })
        ),

      /** Forgets the conversation in the session store and deletes its stored transcript. */
      clear: (caller: Caller, id: SessionId) =>
        Effect.gen(function* () {
          const inSession = yield* session.remove(caller.keyId, id)
          const inStorage = yield* storage.deleteConversation(caller.keyId, id)
          if (!inSession && !inStorage) return yield* new SessionNotFound({ message: `No session ${id}` })
        })
    } as const
  })
}) {}
