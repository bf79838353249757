/**
 * Chat: one conversation turn through the whole pipeline,
 *
 *   safety → session (lock, history, window) → generator (tokens) → session + storage (the turn is kept)
 *
 * for both the whole-reply and the streaming endpoints. A turn is saved once: completed, or — when the client
 * goes away, the server shuts down or the model fails mid-reply — with the partial reply marked interrupted.
 *
 * Every turn holds its session's lock from before the history is read until the turn is saved (for a stream: its
 * end), so two requests on one session never interleave; the later one waits briefly, then gets 409. The prompt is
 * the system prompt, the newest turns that fit the model's context (`Session/Window.ts`), and the new message.
 */
import { Chunk, Clock, Data, DateTime, Effect, Metric, MetricBoundaries, Option } from "effect"
import { randomUUID } from "node:crypto"
import { AppConfig } from "./AppConfig.js"
import type { Caller } from "./Auth.js"
import { ValidationError } from "./Domain/Errors.js"
import { type SessionId, SessionMessage, Turn } from "./Domain/Session.js"
import {
  type Completed,
  type FinishReason,
  type GenerationChunk,
  type GenerationRequest,
  Generator,
  type GeneratorError,
  InputTooLong,
  nextOf,
  type PromptMessage,
  startingWith
} from "./Generator.js"
import { currentRequestId } from "./Http/RequestId.js"
import { RateLimit, type RateLimited, type RateLimitUnavailable } from "./RateLimit.js"
import { ContentBlocked, Safety, type SafetyVerdict } from "./Safety.js"
import { Session, type SessionBusy, SessionNotFound, type SessionUnavailable } from "./Session.js"
import { promptBudget, promptTokens, slidingWindow } from "./Session/Window.js"
import { Storage, type StorageUnavailable } from "./Storage.js"
import { Tokenizer } from "./Tokenizer.js"
import { onScopeClose } from "./lib/finalizer.js"

const windowTruncations = Metric.counter("nexxi_session_window_truncations_total", {
  description: "Prompts from which the oldest turns of the session were left out to fit the model's context.",
  incremental: true
})

/** From 64 tokens to the 32768 of Mistral-7B-Instruct-v0.3's context, doubling. */
const promptTokensHistogram = Metric.histogram(
  "nexxi_session_window_prompt_tokens",
  MetricBoundaries.exponential({ start: 64, factor: 2, count: 10 }),
  "Tokens of each prompt sent to the model (system prompt, the session's window, the new message and the chat " +
    "template), as Nexxi counts them."
)

/** An earlier exchange as a client sends it itself (the OpenAI-compatible endpoint's stateless mode). */
export interface SuppliedTurn {
  readonly user: string
  readonly assistant: string
}

/** An earlier exchange as the window and the prompt need it: stored, or sent by the client. */
interface PromptTurn {
  readonly user: PromptMessage & { readonly tokens: number }
  readonly assistant: PromptMessage & { readonly tokens: number }
}

/** What a client may choose of the generation; the server's settings cap it. */
export interface GenerationOptions {
  readonly maxNewTokens?: number
  readonly temperature?: number
  readonly topP?: number
  readonly stop?: ReadonlyArray<string>
  readonly seed?: number
}

export interface TurnInput {
  readonly caller: Caller
  readonly sessionId: Option.Option<SessionId>
  readonly message: string
  /**
   * Stateless: the conversation so far, as the client sent it, instead of a stored session. Nothing is kept in the
   * session store; the turn's usage is stored, and its transcript only with `keepTranscript`.
   */
  readonly supplied?: { readonly turns: ReadonlyArray<SuppliedTurn>; readonly keepTranscript: boolean }
  /** The client's own system instructions, after the server's system prompt. */
  readonly instructions?: string
  readonly options?: GenerationOptions
}

export type ChatEvent = Data.TaggedEnum<{
  Delta: { readonly text: string }
  Finished: {
    readonly tokensUsed: number
    readonly promptTokens: number
    readonly completionTokens: number
    readonly model: string
    readonly finishReason: FinishReason
  }
}>
export const ChatEvent = Data.taggedEnum<ChatEvent>()
type Finished = Extract<ChatEvent, { _tag: "Finished" }>

export type TurnError =
  | ValidationError
  | ContentBlocked
  | SessionNotFound
  | SessionBusy
  | SessionUnavailable
  | StorageUnavailable
  | GeneratorError
  | RateLimited
  | RateLimitUnavailable

export interface ChatReply {
  readonly sessionId: SessionId
  readonly message: string
  readonly model: string
  readonly tokensUsed: number
  readonly promptTokens: number
  readonly completionTokens: number
  readonly finishReason: FinishReason
  readonly responseTimeMs: number
  readonly timestamp: string
}

/** A streaming turn whose first event (or failure) has already arrived: errors before it are plain HTTP errors. */
export interface StreamingTurn {
  readonly sessionId: SessionId
  /** The next events, as many as are ready, pulled as the client reads; fails with `None` after the last. */
  readonly next: Effect.Effect<Chunk.Chunk<ChatEvent>, Option.Option<TurnError>>
}

const elapsedMsSince = (startNanos: bigint, clock: Clock.Clock) =>
  Math.round(Number(clock.unsafeCurrentTimeNanos() - startNanos) / 1e5) / 10

const elapsedMs = (startNanos: bigint) => Effect.map(Effect.clock, (clock) => elapsedMsSince(startNanos, clock))

export class Chat extends Effect.Service<Chat>()("nexxi/Chat", {
  effect: Effect.gen(function* () {
    const config = yield* AppConfig
    const safety = yield* Safety
    const session = yield* Session
    const generator = yield* Generator
    const storage = yield* Storage
    const tokenizer = yield* Tokenizer
    const rateLimit = yield* RateLimit
    // Visible (at 0) from the first scrape, so that a rate can be taken before the first truncation.
    yield* Metric.incrementBy(windowTruncations, 0)

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

    /** The turns of a session of this owner, or 404: another key's session does not exist for the caller. */
    const turnsOf = (owner: string, id: SessionId) =>
      Effect.flatMap(session.history(owner, id), (found) =>
        Option.match(found, {
          onNone: () => new SessionNotFound({ message: `No session ${id}` }),
          onSome: Effect.succeed
        })
      ).pipe(Effect.withSpan("Session.load"))

    /**
     * A stored session's turns, under its lock (held for the rest of the scope). A new session's turn locks too:
     * nobody else knows its id yet, but a store that is down then fails the turn here, before the model runs, rather
     * than when saving it.
     */
    const storedHistory = (owner: string, id: SessionId, existing: boolean) =>
      Effect.zipRight(
        session.lock(owner, id).pipe(Effect.withSpan("Session.lock")),
        existing ? turnsOf(owner, id) : Effect.succeed<ReadonlyArray<Turn>>([])
      )

    /** The turns a client sent, counted like stored ones; user messages redacted as the policy says. */
    const suppliedHistory = (turns: ReadonlyArray<SuppliedTurn>) =>
      Effect.forEach(turns, (turn) =>
        Effect.gen(function* () {
          const user = yield* safety.redactForPrompt(turn.user)
          return {
            user: { role: "user" as const, content: user, tokens: yield* tokenizer.messageTokens("user", user) },
            assistant: {
              role: "assistant" as const,
              content: turn.assistant,
              tokens: yield* tokenizer.messageTokens("assistant", turn.assistant)
            }
          }
        })
      )

    /** The verdict of the first of these texts that the safety filter blocks. */
    const firstBlocked = (texts: ReadonlyArray<string>) =>
      Effect.reduce(texts, Option.none<SafetyVerdict>(), (found, text) =>
        Option.isSome(found)
          ? Effect.succeed(found)
          : Effect.map(safety.inspect(text), (verdict) =>
              verdict.action === "block" ? Option.some(verdict) : Option.none()
            )
      )

    /**
     * Everything before the model: validation, safety, the session's lock (held for the rest of the scope), and the
     * window of the conversation that fits the prompt budget.
     */
    const prepare = (input: TurnInput) =>
      Effect.gen(function* () {
        yield* checkLength(input.message)
        const verdict = yield* safety.inspect(input.message)
        // Instructions and earlier messages a client sends itself reach the model as much as the new message.
        const blocking =
          verdict.action === "block"
            ? Option.some(verdict)
            : yield* firstBlocked([
                ...(input.instructions === undefined ? [] : [input.instructions]),
                ...(input.supplied?.turns ?? []).map((turn) => turn.user)
              ])
        if (Option.isSome(blocking)) {
          const categories = Object.keys(blocking.value.categories)
          return yield* new ContentBlocked({ message: "The message was blocked by the safety filter", categories })
        }
        // A turn that could not be stored is refused now (503) rather than lost after the reply.
        yield* storage.admit
        const owner = input.caller.keyId
        const info = yield* generator.info
        // Settings win over what the model server reports, so an operator can keep prompts smaller.
        const maxNewTokens = Math.min(input.options?.maxNewTokens ?? config.maxNewTokens, config.maxNewTokens)
        const budget = promptBudget({
          maxInputTokens: Option.orElse(config.maxInputTokens, () => info.maxInputTokens),
          maxTotalTokens: Option.orElse(config.maxTotalTokens, () => info.maxTotalTokens),
          maxNewTokens
        })
        // What the model (and the session's memory, which feeds later prompts) sees of the message.
        const promptText = yield* safety.redactForPrompt(input.message)
        const systemPrompt =
          input.instructions === undefined
            ? config.systemPrompt
            : [config.systemPrompt, yield* safety.redactForPrompt(input.instructions)]
                .filter((part) => part.length > 0)
                .join("\n\n")
        const lastMessageTokens = yield* tokenizer.lastMessageTokens(systemPrompt, promptText)
        const alone = promptTokens([], lastMessageTokens)
        if (alone > budget) {
          return yield* new InputTooLong({
            message:
              `The message is too long for the model: with the system prompt and chat template it takes ${alone} ` +
              `tokens, and a prompt may take at most ${budget} tokens`
          })
        }
        const sessionId = Option.getOrElse(input.sessionId, () => randomUUID() as SessionId)
        const history: ReadonlyArray<PromptTurn> =
          input.supplied === undefined
            ? yield* storedHistory(owner, sessionId, Option.isSome(input.sessionId))
            : yield* suppliedHistory(input.supplied.turns)
        const window = slidingWindow(history, lastMessageTokens, budget)
        if (window.dropped > 0) yield* Metric.increment(windowTruncations)
        yield* Metric.update(promptTokensHistogram, window.promptTokens)
        // The key's concurrency slot and its tokens (the prompt and the most the model may add), until the turn ends.
        const admission = yield* rateLimit.turn(input.caller, { promptTokens: window.promptTokens, maxNewTokens })
        const messages: Array<PromptMessage> = [
          { role: "system", content: systemPrompt },
          ...window.turns.flatMap(({ user, assistant }) => [
            { role: user.role, content: user.content },
            { role: assistant.role, content: assistant.content }
          ]),
          { role: "user", content: promptText }
        ]
        const request: GenerationRequest = { ...input.options, messages, maxNewTokens }
        return {
          owner,
          sessionId,
          modelId: info.modelId,
          request,
          verdict,
          promptText,
          userCreatedAt: yield* DateTime.now,
          admission,
          promptTokens: window.promptTokens
        }
      }).pipe(Effect.withSpan("Chat.prepare"))

    /**
     * The turn's events; the turn is saved when the reply completes, or as interrupted if it ends early. The session
     * stays locked until the scope closes: run the events within it.
     */
    const run = (input: TurnInput) =>
      Effect.gen(function* () {
        const clock = yield* Effect.clock
        const startNanos = clock.unsafeCurrentTimeNanos()
        const { owner, sessionId, modelId, request, verdict, promptText, userCreatedAt, admission, promptTokens } =
          yield* prepare(input)
        // Holds back the end of the reply while it could be the start of a secret (SAFETY_OUTPUT_REDACT=true).
        const output = yield* safety.outputRedactor
        const requestId = yield* currentRequestId
        // The reply as generated, and as the client has been shown it (the same, unless output is redacted).
        let reply = ""
        let shown = ""
        let firstTokenMs: Option.Option<number> = Option.none()
        let saved = false

        const save = (completion: Completed | undefined) =>
          Effect.gen(function* () {
            saved = true
            // Counted once, here, and kept with the messages: later turns' windows only add up the counts.
            const message = (role: "user" | "assistant", content: string, createdAt: DateTime.Utc, cut = false) =>
              Effect.map(
                tokenizer.messageTokens(role, content),
                (tokens) => new SessionMessage({ role, content, created_at: createdAt, interrupted: cut, tokens })
              )
            const repliedAt = yield* DateTime.now
            const interrupted = completion === undefined
            // The session remembers what the model and the client saw; the durable transcript is redacted by
            // default (PII_REDACT_STORAGE).
            const userMessage = yield* message("user", promptText, userCreatedAt)
            const assistant = yield* message("assistant", shown, repliedAt, interrupted)
            const storedUser = yield* safety.redactForStorage(input.message)
            const storedReply = yield* safety.redactForStorage(reply)
            // The real count replaces the reservation; a reply cut short costs its prompt and what it had.
            yield* admission.settle(
              completion === undefined
                ? promptTokens + assistant.tokens
                : completion.promptTokens + completion.completionTokens
            )
            if (input.supplied === undefined) {
              yield* session
                .append(
                  owner,
                  sessionId,
                  // Its two messages were checked when they were made.
                  new Turn({ user: userMessage, assistant }, { disableValidation: true })
                )
                .pipe(Effect.withSpan("Session.save"))
            }
            yield* storage
              .recordTurn({
                keepTranscript: input.supplied?.keepTranscript ?? true,
                requestId,
                owner,
                sessionId,
                model: modelId,
                userMessage:
                  storedUser === promptText ? userMessage : yield* message("user", storedUser, userCreatedAt),
                reply:
                  storedReply === shown ? assistant : yield* message("assistant", storedReply, repliedAt, interrupted),
                finishReason: completion?.finishReason ?? "interrupted",
                promptTokens: completion?.promptTokens ?? 0,
                completionTokens: completion?.completionTokens ?? 0,
                timeToFirstTokenMs: firstTokenMs,
                durationMs: yield* elapsedMs(startNanos),
                safety: { action: verdict.action, categories: verdict.categories }
              })
              .pipe(Effect.withSpan("Storage.recordTurn"))
          }).pipe(Effect.withSpan("Chat.saveTurn"))

        const completed = (chunk: Completed) =>
          Effect.gen(function* () {
            const rest = output.flush()
            shown += rest
            yield* save(chunk)
            const finished = ChatEvent.Finished({
              tokensUsed: chunk.promptTokens + chunk.completionTokens,
              promptTokens: chunk.promptTokens,
              completionTokens: chunk.completionTokens,
              model: modelId,
              finishReason: chunk.finishReason
            })
            return rest.length > 0 ? [ChatEvent.Delta({ text: rest }), finished] : [finished]
          })

        /** The events of what the model generated since the last pull; the turn is saved with its `Completed`. */
        const toEvents = (chunks: Chunk.Chunk<GenerationChunk>) =>
          Effect.suspend(() => {
            const events: Array<ChatEvent> = []
            for (const chunk of chunks) {
              if (chunk._tag === "Completed") {
                return Effect.map(completed(chunk), (last) => Chunk.unsafeFromArray([...events, ...last]))
              }
              if (Option.isNone(firstTokenMs)) firstTokenMs = Option.some(elapsedMsSince(startNanos, clock))
              reply += chunk.text
              const text = output.push(chunk.text)
              shown += text
              if (text.length > 0) events.push(ChatEvent.Delta({ text }))
            }
            return Effect.succeed(Chunk.unsafeFromArray(events))
          })

        const generation = yield* generator.open(request)
        // A reply cut short (client gone, shutdown, model failure) is still part of the conversation; one that
        // never started is not. The turn's scope closes however it ended: the reply is saved then, if it was not.
        yield* onScopeClose(() =>
          saved || reply.length === 0
            ? Effect.void
            : save(undefined).pipe(
                Effect.catchAll((error) => Effect.logError("Could not save an interrupted turn", error))
              )
        )
        const events: Effect.Effect<Chunk.Chunk<ChatEvent>, Option.Option<TurnError>> = Effect.flatMap(
          generation,
          (chunks) => Effect.mapError(toEvents(chunks), Option.some)
        )
        return { sessionId, startNanos, events }
      })

    return {
      /** The whole reply at once. */
      reply: (input: TurnInput): Effect.Effect<ChatReply, TurnError> =>
        Effect.gen(function* () {
          const { sessionId, startNanos, events } = yield* run(input)
          const next = nextOf(events)
          let message = ""
          let finished: Finished | undefined
          for (;;) {
            const chunk = yield* next
            if (Option.isNone(chunk)) break
            for (const event of chunk.value) {
              if (event._tag === "Delta") message += event.text
              else finished = event
            }
          }
          if (finished === undefined) return yield* Effect.die(new Error("generation ended without completion"))
          return {
            sessionId,
            message,
            model: finished.model,
            tokensUsed: finished.tokensUsed,
            promptTokens: finished.promptTokens,
            completionTokens: finished.completionTokens,
            finishReason: finished.finishReason,
            responseTimeMs: yield* elapsedMs(startNanos),
            timestamp: DateTime.formatIso(yield* DateTime.now)
          }
        }).pipe(Effect.scoped, Effect.withSpan("Chat.reply")),

      /**
       * The reply as events. Succeeds once the first event arrived, so early failures keep their HTTP status. The
       * session stays locked until the caller's scope (the response's) closes, after the last event.
       */
      stream: (input: TurnInput) =>
        Effect.gen(function* () {
          const { sessionId, events } = yield* run(input)
          // Pull the first events within the request's scope; the rest is pulled as the client reads.
          const first = Option.getOrElse(yield* nextOf(events), () => Chunk.empty<ChatEvent>())
          const turn: StreamingTurn = { sessionId, next: startingWith(first, events) }
          return turn
        }).pipe(Effect.withSpan("Chat.stream")),

      /** The session's messages, oldest first. Needs no lock: a reader sees whole turns only. */
      transcript: (caller: Caller, id: SessionId) =>
        Effect.map(turnsOf(caller.keyId, id), (turns) => turns.flatMap(({ user, assistant }) => [user, assistant])),

      /**
       * Forgets the conversation in the session store and deletes its stored transcript. Takes the session's lock,
       * so that a turn in progress cannot bring the session back by saving itself after the deletion.
       */
      clear: (caller: Caller, id: SessionId) =>
        Effect.gen(function* () {
          yield* session.lock(caller.keyId, id)
          const inSession = yield* session.remove(caller.keyId, id)
          const inStorage = yield* storage.deleteConversation(caller.keyId, id)
          if (!inSession && !inStorage) return yield* new SessionNotFound({ message: `No session ${id}` })
        }).pipe(Effect.scoped)
    } as const
  })
}) {}
