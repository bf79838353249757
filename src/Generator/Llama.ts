/**
 * The local backend: a GGUF model (e.g. Mistral-7B-Instruct-v0.3 Q4_K_M) run in-process by llama.cpp through
 * node-llama-cpp, on the CPU or a local GPU. No model server: the model loads once, in the background, while the
 * API already answers (`/ready` says "loading" until it is in memory).
 *
 * - Chat template: the GGUF's own (`tokenizer.chat_template`), applied by node-llama-cpp.
 * - Concurrency: one llama.cpp context with LLAMA_PARALLEL sequences, each generating for one request; requests
 *   beyond that wait in a queue of LLAMA_QUEUE_SIZE, and a full queue answers 503 with Retry-After.
 * - Token counts are llama.cpp's own: the templated prompt as the model tokenizes it, and every token sampled.
 * - Interruption (client gone, shutdown) aborts the generation at once; its sequence serves the next request.
 *
 * node-llama-cpp is an optional dependency (its CUDA and Vulkan builds are large): it is imported only here, only
 * when this backend is chosen, and its absence is a one-line start-up error.
 */
import { Cause, Data, Duration, Effect, Mailbox, Metric, Option, Runtime, Stream, SynchronizedRef } from "effect"
import { statSync } from "node:fs"
import { basename } from "node:path"
import type * as NodeLlamaCpp from "node-llama-cpp"
import { StartupError } from "../AppConfig.js"
import type { DependencyHealth } from "../Domain/Health.js"
import {
  type FinishReason,
  GenerationChunk,
  type GenerationRequest,
  Generator,
  GeneratorFailed,
  GeneratorTimeout,
  GeneratorUnavailable,
  InputTooLong,
  type ModelInfo,
  type PromptMessage
} from "../Generator.js"

export type LlamaModule = typeof NodeLlamaCpp

/** The real import; a test passes another loader to play a machine without the package. */
export const importNodeLlamaCpp = (): Promise<LlamaModule> => import("node-llama-cpp")

export const LLAMA_PACKAGE = "node-llama-cpp@3.21.1"

export interface LlamaSettings {
  readonly modelPath: string
  /** Context sequences: how many requests generate at once. */
  readonly parallel: number
  /** Requests that may wait for a free sequence; beyond that, 503. */
  readonly queueSize: number
  readonly threads: number
  /** Tokens per sequence; none: the model's training context, at most `DEFAULT_CONTEXT_SIZE`. */
  readonly contextSize: Option.Option<number>
  readonly gpu: "auto" | "off"
  /** GENERATOR_DEADLINE_MS: the only resilience setting that means something in-process. */
  readonly deadlineMs: Option.Option<number>
}

/** Enough for a long conversation; a 7B model's own 32k context would take about 4 GB of memory per sequence. */
export const DEFAULT_CONTEXT_SIZE = 4096
/** A client told to come back later waits this long: about one reply of a small model on a CPU. */
const QUEUE_FULL_RETRY_AFTER_SECONDS = 2
const LOADING_RETRY_AFTER_SECONDS = 5

// Metrics (see src/Metrics.ts for the conventions).

const queueRejections = Metric.counter("nexxi_llama_queue_rejections_total", {
  description: "Requests refused (503) because every sequence of the local model was busy and its queue was full.",
  incremental: true
})
const queueWaiting = Metric.gauge("nexxi_llama_queue_waiting", {
  description: "Requests waiting for a free sequence of the local model."
})
const sequencesBusy = Metric.gauge("nexxi_llama_sequences_busy", {
  description: "Sequences of the local model generating now (at most LLAMA_PARALLEL)."
})
const generatedTokens = Metric.counter("nexxi_llama_generated_tokens_total", {
  description: "Tokens sampled by the local model, including those of generations cut short.",
  incremental: true
})

/** For tests and dashboards that read them in-process. */
export const llamaMetrics = { queueRejections, queueWaiting, sequencesBusy, generatedTokens } as const

type Chat = InstanceType<LlamaModule["LlamaChat"]>
type ChatHistory = Parameters<Chat["generateResponse"]>[0]

type ModelState = Data.TaggedEnum<{
  Loading: { readonly progress: number }
  Ready: { readonly info: ModelInfo; readonly contextSize: number; readonly tokenize: (history: ChatHistory) => number }
  Failed: { readonly reason: string }
}>
const ModelState = Data.taggedEnum<ModelState>()

const messageOf = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

const isModuleNotFound = (cause: unknown) =>
  typeof cause === "object" &&
  cause !== null &&
  "code" in cause &&
  (cause.code === "ERR_MODULE_NOT_FOUND" || cause.code === "MODULE_NOT_FOUND")

/** Nexxi's messages as node-llama-cpp's chat history, ending with the model's (empty) turn to generate. */
const historyOf = (messages: ReadonlyArray<PromptMessage>): ChatHistory => [
  ...messages.map((message) =>
    message.role === "system"
      ? { type: "system" as const, text: message.content }
      : message.role === "user"
        ? { type: "user" as const, text: message.content }
        : { type: "model" as const, response: [message.content] }
  ),
  { type: "model", response: [] }
]

const finishReasonOf = (stopReason: string): FinishReason => {
  switch (stopReason) {
    case "maxTokens":
      return "length"
    case "customStopTrigger":
      return "stop"
    case "abort":
      return "interrupted"
    default:
      // End-of-generation token, or a stop text of the chat template (e.g. `</s>` written out).
      return "eos"
  }
}

/**
 * Starts the local backend: node-llama-cpp and its native binary now (a failure stops start-up with one line), the
 * model in the background. The model, its context and llama.cpp are released when the scope closes.
 */
export const makeLlamaGenerator = (settings: LlamaSettings, load: () => Promise<LlamaModule> = importNodeLlamaCpp) =>
  Effect.gen(function* () {
    const modelFile = basename(settings.modelPath)
    const modelId = modelFile.replace(/\.gguf$/i, "")
    const isFile = yield* Effect.try(() => statSync(settings.modelPath).isFile()).pipe(
      Effect.orElseSucceed(() => false)
    )
    if (!isFile) {
      return yield* new StartupError({ message: `MODEL_PATH ${settings.modelPath} is not a readable GGUF file` })
    }
    const library = yield* Effect.tryPromise({
      try: load,
      catch: (cause) =>
        new StartupError({
          message: isModuleNotFound(cause)
            ? `GENERATOR=llama needs the optional package ${LLAMA_PACKAGE}: run \`npm install ${LLAMA_PACKAGE}\` ` +
              "(or build the image with --build-arg WITH_LLAMA=true)"
            : `cannot load node-llama-cpp: ${messageOf(cause)}`
        })
    })

    // llama.cpp's own warnings and errors go to Nexxi's log.
    const runtime = yield* Effect.runtime<never>()
    const log = (level: string, message: string) =>
      Runtime.runSync(runtime)(
        (level === "error" || level === "fatal" ? Effect.logError(message) : Effect.logWarning(message)).pipe(
          Effect.annotateLogs("component", "llama.cpp")
        )
      )
    const llama = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          library.getLlama({
            gpu: settings.gpu === "off" ? false : "auto",
            // The default oversubscribes small machines badly (hundreds of times slower on two busy cores).
            maxThreads: settings.threads,
            // Prebuilt binaries only: never download or compile at start-up.
            build: "never",
            skipDownload: true,
            progressLogs: false,
            logLevel: library.LlamaLogLevel.warn,
            logger: (level, message) => {
              const text = message.trim()
              if (text.length > 0) log(level, text)
            }
          }),
        catch: (cause) =>
          new StartupError({ message: `node-llama-cpp has no usable llama.cpp binary here: ${messageOf(cause)}` })
      }),
      (instance) => Effect.promise(() => instance.dispose())
    )
    const device = llama.gpu === false ? "CPU" : llama.gpu.toUpperCase()

    const state = yield* SynchronizedRef.make<ModelState>(ModelState.Loading({ progress: 0 }))
    /**
     * Chats over free sequences, filled once the model is loaded (requests wait for that before they get here): a
     * request takes a permit, then a chat for its generation, and gives both back. A semaphore rather than a queue
     * of chats, so that a waiter interrupted just as a chat frees up cannot lose it.
     */
    const free: Array<Chat> = []
    const permits = yield* Effect.makeSemaphore(settings.parallel)

    const loadModel = Effect.gen(function* () {
      yield* Effect.logInfo(
        `Generator: loading ${modelFile} with llama.cpp on ${device} (${settings.threads} threads, ` +
          `${settings.parallel} sequences)`
      )
      let logged = 0
      const model = yield* Effect.tryPromise({
        try: (signal) =>
          llama.loadModel({
            modelPath: settings.modelPath,
            ...(settings.gpu === "off" ? { gpuLayers: 0 } : {}),
            loadSignal: signal,
            onLoadProgress: (progress) => {
              const percent = Math.floor(progress * 100)
              Runtime.runSync(runtime)(SynchronizedRef.set(state, ModelState.Loading({ progress: percent })))
              if (percent >= logged + 25 && percent < 100) {
                logged = percent - (percent % 25)
                Runtime.runSync(runtime)(Effect.logInfo(`Generator: loading ${modelFile}: ${percent} %`))
              }
            }
          }),
        catch: messageOf
      })
      const contextSize = Option.getOrElse(settings.contextSize, () =>
        Math.min(DEFAULT_CONTEXT_SIZE, model.trainContextSize)
      )
      const context = yield* Effect.tryPromise({
        try: () => model.createContext({ contextSize, sequences: settings.parallel, threads: settings.threads }),
        catch: messageOf
      })
      const chats = Array.from(
        { length: settings.parallel },
        () => new library.LlamaChat({ contextSequence: context.getSequence() })
      )
      free.push(...chats)
      const wrapper = chats[0]!.chatWrapper
      const tokenize = (history: ChatHistory) =>
        wrapper.generateContextState({ chatHistory: history }).contextText.tokenize(model.tokenizer).length
      yield* SynchronizedRef.set(
        state,
        ModelState.Ready({
          info: { modelId, maxInputTokens: Option.none(), maxTotalTokens: Option.some(context.contextSize) },
          contextSize: context.contextSize,
          tokenize
        })
      )
      yield* Effect.logInfo(
        `Generator: ${modelFile} loaded on ${device}: ${context.contextSize} tokens of context per sequence, ` +
          `chat template ${wrapper.wrapperName}`
      )
    }).pipe(
      Effect.catchAll((reason) =>
        Effect.zipRight(
          SynchronizedRef.set(state, ModelState.Failed({ reason })),
          Effect.logError(`Generator: ${modelFile} could not be loaded: ${reason}`)
        )
      )
    )
    yield* Effect.forkScoped(loadModel)

    const readiness = Effect.map(
      SynchronizedRef.get(state),
      ModelState.$match({
        Loading: ({ progress }): DependencyHealth => ({
          status: "down",
          kind: "llama",
          detail: `loading ${modelFile} (${progress} %)`
        }),
        Ready: ({ contextSize }): DependencyHealth => ({
          status: "embedded",
          kind: "llama",
          detail: `${modelFile} on ${device}, ${settings.parallel} sequences of ${contextSize} tokens`
        }),
        Failed: ({ reason }): DependencyHealth => ({
          status: "down",
          kind: "llama",
          detail: `${modelFile} could not be loaded: ${reason}`
        })
      })
    )

    const ready = Effect.flatMap(
      SynchronizedRef.get(state),
      ModelState.$match({
        Loading: ({ progress }) =>
          Effect.fail(
            new GeneratorUnavailable({
              message: `The model is still loading (${progress} %)`,
              retry_after_seconds: LOADING_RETRY_AFTER_SECONDS
            })
          ),
        Ready: Effect.succeed,
        Failed: ({ reason }) =>
          Effect.fail(new GeneratorUnavailable({ message: `The model could not be loaded: ${reason}` }))
      })
    )

    // Who holds or waits for a sequence. Changed under the ref's lock, so that the gauges follow it exactly.
    const occupancy = yield* SynchronizedRef.make({ waiting: 0, busy: 0 })
    const publish = (next: { readonly waiting: number; readonly busy: number }) =>
      Effect.as(Effect.zipRight(Metric.set(queueWaiting, next.waiting), Metric.set(sequencesBusy, next.busy)), next)
    const move = (waiting: number, busy: number) =>
      SynchronizedRef.updateEffect(occupancy, (current) =>
        publish({ waiting: current.waiting + waiting, busy: current.busy + busy })
      )
    yield* publish({ waiting: 0, busy: 0 })
    yield* Metric.incrementBy(queueRejections, 0)
    yield* Metric.incrementBy(generatedTokens, 0)

    /** A free sequence for the rest of the scope, after waiting in the queue if need be; 503 when it is full. */
    const sequence = Effect.gen(function* () {
      yield* SynchronizedRef.updateEffect(occupancy, (current) =>
        current.waiting + current.busy >= settings.parallel + settings.queueSize
          ? Effect.zipRight(
              Metric.increment(queueRejections),
              Effect.fail(
                new GeneratorUnavailable({
                  message:
                    `The local model is busy: ${settings.parallel} replies are being generated and ` +
                    `${settings.queueSize} more are waiting`,
                  retry_after_seconds: QUEUE_FULL_RETRY_AFTER_SECONDS
                })
              )
            )
          : publish({ waiting: current.waiting + 1, busy: current.busy })
      )
      // Waiting can be interrupted (the client left the queue); once taken, the sequence is always given back.
      return yield* Effect.uninterruptibleMask((restore) =>
        restore(permits.take(1)).pipe(
          Effect.onInterrupt(() => move(-1, 0)),
          Effect.zipRight(Effect.sync(() => free.pop()!)),
          Effect.tap((chat) =>
            Effect.zipRight(
              move(-1, 1),
              Effect.addFinalizer(() =>
                Effect.sync(() => free.push(chat)).pipe(
                  Effect.zipRight(permits.release(1)),
                  Effect.zipRight(move(0, -1))
                )
              )
            )
          )
        )
      )
    })

    const generation = (request: GenerationRequest) =>
      Effect.gen(function* () {
        const model = yield* ready
        const history = historyOf(request.messages)
        const promptTokens = model.tokenize(history)
        // One token of the context stays free, as node-llama-cpp requires.
        const room = model.contextSize - promptTokens - 1
        if (room <= 0) {
          return yield* new InputTooLong({
            message: `The prompt takes ${promptTokens} tokens and the model's context holds ${model.contextSize}`
          })
        }
        const chat = yield* sequence
        const output = yield* Mailbox.make<GenerationChunk, GeneratorFailed>()
        const controller = new AbortController()
        const before = chat.sequence.tokenMeter.getState()
        const sampled = () => chat.sequence.tokenMeter.diff(before).usedOutputTokens
        // Started and given its finalizer atomically. The finalizer runs before the sequence goes back: it aborts,
        // then waits until llama.cpp has really stopped.
        const response = yield* Effect.acquireRelease(
          Effect.sync(() =>
            chat.generateResponse(history, {
              maxTokens: Math.min(request.maxNewTokens, room),
              ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
              ...(request.topP === undefined ? {} : { topP: request.topP }),
              ...(request.seed === undefined ? {} : { seed: request.seed }),
              ...(request.stop === undefined || request.stop.length === 0 ? {} : { customStopTriggers: request.stop }),
              // As TGI: no repetition penalty unless asked for (the Generator request has none).
              repeatPenalty: false,
              signal: controller.signal,
              stopOnAbortSignal: true,
              onTextChunk: (text) => {
                if (text.length > 0) output.unsafeOffer(GenerationChunk.Token({ text }))
              }
            })
          ),
          (started) =>
            Effect.sync(() => controller.abort()).pipe(
              Effect.zipRight(Effect.promise(() => started.then(sampled, sampled))),
              Effect.flatMap((tokens) => Metric.incrementBy(generatedTokens, tokens))
            )
        )
        yield* Effect.tryPromise({ try: () => response, catch: messageOf }).pipe(
          Effect.flatMap((result) =>
            output.offer(
              GenerationChunk.Completed({
                finishReason: finishReasonOf(result.metadata.stopReason),
                promptTokens,
                completionTokens: sampled()
              })
            )
          ),
          Effect.matchCauseEffect({
            onSuccess: () => output.end,
            onFailure: (cause) =>
              output.fail(
                new GeneratorFailed({
                  message: `The local model failed to generate: ${messageOf(Cause.squash(cause))}`
                })
              )
          }),
          Effect.forkScoped
        )
        return Mailbox.toStream(output)
      })

    const stream = (request: GenerationRequest) => {
      const generated = Stream.unwrapScoped(generation(request))
      return Option.match(settings.deadlineMs, {
        onNone: () => generated,
        onSome: (ms) =>
          Stream.interruptWhen(
            generated,
            Effect.zipRight(
              Effect.sleep(Duration.millis(ms)),
              Effect.fail(new GeneratorTimeout({ message: `The local model did not finish within ${ms} ms` }))
            )
          )
      })
    }

    return Generator.make({ info: Effect.map(ready, (model) => model.info), readiness, stream })
  })
