/**
 * The `llama` backend with a real llama.cpp (node-llama-cpp) and a real GGUF file: a tiny llama-architecture model
 * written by test/support/gguf.ts (seeded random weights, byte-fallback vocabulary, a Mistral-like chat template).
 * It writes printable gibberish and never ends by itself, so a generation lasts until its token limit or its stop
 * sequence: long generations keep a sequence busy for seconds, long enough to observe queues and interruption.
 * One thread everywhere: more would only fight over two cores.
 */
import { describe, expect, it, layer } from "@effect/vitest"
import { Chunk, Duration, Effect, Exit, Fiber, Layer, Metric, Option, Schedule, Scope, Stream } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { AppConfig, StartupError } from "../src/AppConfig.js"
import {
  type GenerationChunk,
  type GenerationRequest,
  Generator,
  GeneratorUnavailable,
  InputTooLong
} from "../src/Generator.js"
import { GeneratorLive } from "../src/Generator/Live.js"
import { importNodeLlamaCpp, type LlamaSettings, llamaMetrics, makeLlamaGenerator } from "../src/Generator/Llama.js"
import { tinyLlamaGguf, writeTinyLlama } from "./support/gguf.js"
import { spawnNexxi } from "./support/process.js"
import { startTestServer, TEST_API_KEY, testConfig } from "./support/server.js"
import { readSse } from "./support/sse.js"

const directory = mkdtempSync(join(tmpdir(), "nexxi-llama-"))
const modelPath = writeTinyLlama(join(directory, "tiny-llama.gguf"))

const settings: LlamaSettings = {
  modelPath,
  parallel: 2,
  queueSize: 1,
  threads: 1,
  contextSize: Option.some(4096),
  gpu: "off",
  deadlineMs: Option.none()
}

const llamaEnv = {
  MODEL_PATH: modelPath,
  LLAMA_THREADS: "1",
  LLAMA_GPU: "off",
  LLAMA_CONTEXT_SIZE: "4096",
  RATE_LIMIT_TPM: "0"
}

const call = <A>(promise: () => Promise<A>) => Effect.promise(promise)

/** Checks `condition` every 20 ms until it holds (at most 15 s): waiting for a state, never for a duration. */
const eventually = <A>(effect: Effect.Effect<A>, condition: (value: A) => boolean) =>
  effect.pipe(
    Effect.filterOrFail(condition),
    Effect.retry(Schedule.spaced(Duration.millis(20))),
    Effect.timeoutFail({ duration: Duration.seconds(15), onTimeout: () => new Error("condition never held") }),
    Effect.orDie
  )

const gauge = (metric: Metric.Metric.Gauge<number>) => Effect.map(Metric.value(metric), (state) => state.value)
const counter = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (state) => state.count)

const ask = (message: string, overrides: Partial<GenerationRequest> = {}): GenerationRequest => ({
  messages: [
    { role: "system", content: "You are a tiny test model." },
    { role: "user", content: message }
  ],
  maxNewTokens: 16,
  ...overrides
})

const textOf = (chunks: ReadonlyArray<GenerationChunk>) =>
  chunks.flatMap((chunk) => (chunk._tag === "Token" ? [chunk.text] : [])).join("")
const completionOf = (chunks: ReadonlyArray<GenerationChunk>) => {
  const last = chunks.at(-1)
  if (last?._tag !== "Completed") throw new Error("the stream did not end with its completion")
  return last
}
const run = (generator: Generator["Type"], request: GenerationRequest) =>
  Effect.map(Stream.runCollect(generator.stream(request)), Chunk.toReadonlyArray)

/** Opens a generation in its own scope and pulls its first token: it holds a sequence until the scope closes. */
const started = (generator: Generator["Type"], request: GenerationRequest) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const pull = yield* Scope.extend(Stream.toPull(generator.stream(request)), scope)
    const first = yield* pull
    return { scope, first: Chunk.toReadonlyArray(first), close: Scope.close(scope, Exit.void) }
  })

/** The tiny model's prompt as the GGUF's template renders it, tokenized by llama.cpp: computed here on its own. */
const promptTokensOf = (request: GenerationRequest) =>
  Effect.promise(async () => {
    const { getLlama, resolveChatWrapper } = await importNodeLlamaCpp()
    const llama = await getLlama({ gpu: false, maxThreads: 1, build: "never" })
    try {
      const model = await llama.loadModel({ modelPath, gpuLayers: 0 })
      const wrapper = resolveChatWrapper(model)
      const { contextText } = wrapper.generateContextState({
        chatHistory: [
          ...request.messages.map((message) =>
            message.role === "system"
              ? { type: "system" as const, text: message.content }
              : { type: "user" as const, text: message.content }
          ),
          { type: "model", response: [] }
        ]
      })
      return { text: contextText.toString(), tokens: contextText.tokenize(model.tokenizer).length }
    } finally {
      await llama.dispose()
    }
  })

describe("the tiny GGUF writer", () => {
  it("writes the same bytes for the same seed, and a GGUF v3 header", () => {
    const bytes = tinyLlamaGguf({ seed: 7 })
    expect(bytes.equals(tinyLlamaGguf({ seed: 7 }))).toBe(true)
    expect(bytes.equals(tinyLlamaGguf({ seed: 8 }))).toBe(false)
    expect(bytes.subarray(0, 4).toString("latin1")).toBe("GGUF")
    expect(bytes.readUInt32LE(4)).toBe(3)
    expect(bytes.length).toBeLessThan(1024 * 1024)
  })
})

describe("start-up of the llama backend", () => {
  it.scopedLive("without node-llama-cpp installed: one line saying what to install", () =>
    Effect.gen(function* () {
      const missing = () =>
        Promise.reject(
          Object.assign(new Error("Cannot find package 'node-llama-cpp'"), { code: "ERR_MODULE_NOT_FOUND" })
        )
      const error = yield* Effect.flip(makeLlamaGenerator(settings, missing))
      expect(error).toBeInstanceOf(StartupError)
      expect(error.message).toContain("npm install node-llama-cpp@3.21.1")
      expect(error.message).toContain("--build-arg WITH_LLAMA=true")
      expect(error.message).not.toContain("\n")
    })
  )

  it.scopedLive("MODEL_PATH=<file>.gguf chooses the backend; GENERATOR=llama without MODEL_PATH stops start-up", () =>
    Effect.gen(function* () {
      const backendWith = (env: Record<string, string>) =>
        Effect.flatMap(Generator, (generator) => generator.readiness).pipe(
          Effect.provide(GeneratorLive.pipe(Layer.provide(AppConfig.Default), Layer.provide(testConfig(env))))
        )
      expect(yield* backendWith({ ...llamaEnv, TGI_URL: "http://127.0.0.1:9" })).toMatchObject({ kind: "llama" })
      const exit = yield* Effect.exit(backendWith({ GENERATOR: "llama" }))
      expect(JSON.stringify(exit)).toContain("MODEL_PATH (a .gguf file) is required when GENERATOR=llama")
    })
  )

  it.scopedLive("a MODEL_PATH that is not a file stops start-up", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(makeLlamaGenerator({ ...settings, modelPath: join(directory, "none.gguf") }))
      expect(error.message).toContain("none.gguf is not a readable GGUF file")
    })
  )

  it.scopedLive("/ready is down while the model loads, then the model answers", () =>
    Effect.gen(function* () {
      const generator = yield* makeLlamaGenerator({ ...settings, parallel: 1 })
      // The load runs in the background: right after start-up the model is not in memory yet.
      expect(yield* generator.readiness).toMatchObject({ status: "down", kind: "llama" })
      expect((yield* Effect.flip(generator.info)).message).toContain("still loading")
      const ready = yield* eventually(generator.readiness, (health) => health.status !== "down")
      expect(ready).toMatchObject({ status: "embedded", kind: "llama" })
      expect(yield* generator.info).toMatchObject({ modelId: "tiny-llama", maxTotalTokens: Option.some(4096) })
    })
  )
})

describe("generating with a local GGUF model", () => {
  const loaded = Layer.scoped(
    Generator,
    Effect.tap(makeLlamaGenerator(settings), (generator) =>
      eventually(generator.readiness, (health) => health.status !== "down")
    )
  )

  // Live services (no TestClock): the model works in real time.
  layer(loaded, { timeout: 30_000, excludeTestServices: true })((it) => {
    it.effect("streams tokens, then a completion with llama.cpp's own token counts", () =>
      Effect.gen(function* () {
        const generator = yield* Generator
        const request = ask("Hello, who are you? Ça va ? 🙂", { maxNewTokens: 12 })
        const chunks = yield* run(generator, request)
        const tokens = chunks.filter((chunk) => chunk._tag === "Token")
        expect(tokens).toHaveLength(12)
        const prompt = yield* promptTokensOf(request)
        expect(prompt.text).toContain("You are a tiny test model.")
        expect(prompt.text).toContain("Ça va ? 🙂")
        expect(completionOf(chunks)).toMatchObject({
          finishReason: "length",
          promptTokens: prompt.tokens,
          completionTokens: 12
        })
      })
    )

    it.effect("stop sequences end the reply before them; seeds make sampling repeatable", () =>
      Effect.gen(function* () {
        const generator = yield* Generator
        const greedy = textOf(yield* run(generator, ask("Count", { maxNewTokens: 30 })))
        const stop = greedy.slice(8, 11)
        const cut = yield* run(generator, ask("Count", { maxNewTokens: 30, stop: [stop] }))
        expect(textOf(cut)).toBe(greedy.slice(0, greedy.indexOf(stop)))
        expect(completionOf(cut).finishReason).toBe("stop")
        // The tokens of the stop sequence were generated too, and are counted.
        expect(completionOf(cut).completionTokens).toBeGreaterThan(textOf(cut).length > 0 ? 1 : 0)

        const sampled = (seed: number) =>
          Effect.map(run(generator, ask("Tell me", { maxNewTokens: 20, temperature: 1.5, seed })), textOf)
        const first = yield* sampled(7)
        expect(yield* sampled(7)).toBe(first)
        expect(first).not.toBe(greedy.slice(0, first.length))
      })
    )

    it.effect("a conversation longer than the context is refused before generating", () =>
      Effect.gen(function* () {
        const generator = yield* Generator
        const error = yield* Effect.flip(run(generator, ask("word ".repeat(3000))))
        expect(error).toBeInstanceOf(InputTooLong)
      })
    )

    it.effect(
      "parallel sequences generate at once; then requests queue; a full queue is refused with Retry-After",
      () =>
        Effect.gen(function* () {
          const generator = yield* Generator
          const long = ask("Go on", { maxNewTokens: 3000 })
          const rejectedBefore = yield* counter(llamaMetrics.queueRejections)
          // Both sequences generating together: each has its first token while the other is still running.
          const first = yield* started(generator, long)
          const second = yield* started(generator, long)
          expect(first.first[0]?._tag).toBe("Token")
          expect(second.first[0]?._tag).toBe("Token")
          expect(yield* gauge(llamaMetrics.sequencesBusy)).toBe(2)

          // The third waits for a sequence; the fourth finds the queue (of one) full.
          const third = yield* Effect.fork(started(generator, long))
          yield* eventually(gauge(llamaMetrics.queueWaiting), (waiting) => waiting === 1)
          const refused = yield* Effect.flip(run(generator, long))
          expect(refused).toBeInstanceOf(GeneratorUnavailable)
          expect((refused as GeneratorUnavailable).retry_after_seconds).toBe(2)
          expect(yield* counter(llamaMetrics.queueRejections)).toBe(rejectedBefore + 1)

          // Closing one generation hands its sequence to the one waiting.
          yield* first.close
          const waited = yield* Fiber.join(third)
          expect(waited.first[0]?._tag).toBe("Token")
          expect(yield* gauge(llamaMetrics.queueWaiting)).toBe(0)
          yield* second.close
          yield* waited.close
          expect(yield* gauge(llamaMetrics.sequencesBusy)).toBe(0)
        })
    )

    it.effect("interruption aborts the generation at once and frees its sequence", () =>
      Effect.gen(function* () {
        const generator = yield* Generator
        const before = yield* counter(llamaMetrics.generatedTokens)
        const generation = yield* started(generator, ask("Go on", { maxNewTokens: 3000 }))
        // Closing waits until llama.cpp has stopped: the count is final once it returns.
        yield* generation.close
        const generated = (yield* counter(llamaMetrics.generatedTokens)) - before
        expect(generated).toBeGreaterThan(0)
        expect(generated).toBeLessThan(3000)
        expect(yield* gauge(llamaMetrics.sequencesBusy)).toBe(0)
        // Both sequences serve again.
        const replies = yield* Effect.all([run(generator, ask("a")), run(generator, ask("b"))], {
          concurrency: "unbounded"
        })
        expect(replies.map((chunks) => completionOf(chunks).completionTokens)).toEqual([16, 16])
        expect(yield* counter(llamaMetrics.generatedTokens)).toBe(before + generated + 32)
      })
    )

    it.effect("a client that leaves the queue gives its place up", () =>
      Effect.gen(function* () {
        const generator = yield* Generator
        const long = ask("Go on", { maxNewTokens: 3000 })
        const held = yield* Effect.all([started(generator, long), started(generator, long)])
        const waiting = yield* Effect.fork(started(generator, long))
        yield* eventually(gauge(llamaMetrics.queueWaiting), (count) => count === 1)
        yield* Fiber.interrupt(waiting)
        expect(yield* gauge(llamaMetrics.queueWaiting)).toBe(0)
        yield* Effect.forEach(held, (generation) => generation.close)
        expect(yield* gauge(llamaMetrics.sequencesBusy)).toBe(0)
      })
    )
  })
})

describe("Nexxi with MODEL_PATH=<file>.gguf, over HTTP", () => {
  const chatStream = (server: { request: (path: string, init?: any) => Promise<Response> }, init: RequestInit = {}) =>
    call(() => server.request("/v1/chat/stream", { method: "POST", json: { message: "Hello there" }, ...init }))
  const metricsOf = (url: string) => call(() => fetch(url + "/metrics").then((response) => response.text()))
  const metric = (text: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN)

  it.scopedLive("streams the model's reply through the API, with its token counts, once /ready says so", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer({ generator: GeneratorLive, env: { ...llamaEnv, MAX_NEW_TOKENS: "24" } })
      yield* eventually(
        call(() => fetch(server.url + "/ready").then((response) => response.status)),
        (status) => status === 200
      )
      const ready = yield* call(() => fetch(server.url + "/ready").then((response) => response.json() as any))
      expect(ready.dependencies.generator).toMatchObject({ status: "embedded", kind: "llama" })

      const response = yield* chatStream(server)
      expect(response.status).toBe(200)
      const events = (yield* call(readSse(response).rest)).map((event) => JSON.parse(event.data))
      const deltas = events.filter((event) => !event.finished)
      expect(deltas).toHaveLength(24)
      const final = events.at(-1)
      expect(final).toMatchObject({ finished: true, finish_reason: "length", model: "tiny-llama" })

      // The whole reply: the same greedy text, the same counts.
      const whole = yield* call(() =>
        server.request("/v1/chat", { method: "POST", json: { message: "Hello there" } }).then((r) => r.json() as any)
      )
      expect(whole.message).toBe(deltas.map((event) => event.delta).join(""))
      expect(whole.tokens_used).toBe(final.tokens_used)
      expect(whole.tokens_used).toBeGreaterThan(24)
    })
  )

  it.scopedLive(
    "one sequence, a queue of one: the next waits, the one after gets 503; a disconnect frees the model",
    () =>
      Effect.gen(function* () {
        const server = yield* startTestServer({
          generator: GeneratorLive,
          env: { ...llamaEnv, LLAMA_PARALLEL: "1", LLAMA_QUEUE_SIZE: "1", MAX_NEW_TOKENS: "3000" }
        })
        yield* eventually(
          call(() => fetch(server.url + "/ready").then((response) => response.status)),
          (status) => status === 200
        )
        // Metrics are process-wide: earlier tests counted too.
        const before = yield* metricsOf(server.url)
        const generatedBefore = metric(before, "nexxi_llama_generated_tokens_total")
        const rejectedBefore = metric(before, "nexxi_llama_queue_rejections_total")

        const first = new AbortController()
        const firstResponse = yield* chatStream(server, { signal: first.signal })
        expect(firstResponse.status).toBe(200)
        expect((yield* call(readSse(firstResponse).next))?.data).toContain('"delta"')

        // The second waits for the sequence (its response starts with its first token).
        const second = new AbortController()
        const secondResponse = yield* Effect.fork(chatStream(server, { signal: second.signal }))
        yield* eventually(metricsOf(server.url), (text) => metric(text, "nexxi_llama_queue_waiting") === 1)

        const refused = yield* chatStream(server)
        expect(refused.status).toBe(503)
        expect(refused.headers.get("retry-after")).toBe("2")
        expect(((yield* call(() => refused.json())) as any).error.type).toBe("generator_unavailable")
        expect(metric(yield* metricsOf(server.url), "nexxi_llama_queue_rejections_total")).toBe(rejectedBefore + 1)

        // The first client disconnects: its generation stops, and the second gets the sequence.
        first.abort()
        const next = yield* Fiber.join(secondResponse)
        expect(next.status).toBe(200)
        expect((yield* call(readSse(next).next))?.data).toContain('"delta"')
        second.abort()
        const after = yield* eventually(
          metricsOf(server.url),
          (text) => metric(text, "nexxi_llama_sequences_busy") === 0
        )
        // Two generations of up to 3000 tokens each, both cut short.
        expect(metric(after, "nexxi_llama_generated_tokens_total") - generatedBefore).toBeLessThan(3000)
        expect(after).toMatch(/^nexxi_chat_finish_reasons_total\{reason="interrupted"\} 2$/m)
      })
  )

  it("`MODEL_PATH=<file>.gguf npm start` serves the model, no other setting needed", async () => {
    const nexxi = await spawnNexxi({
      MODEL_PATH: modelPath,
      LLAMA_THREADS: "1",
      LLAMA_GPU: "off",
      API_KEY: TEST_API_KEY,
      DATA_DIR: join(directory, "data")
    })
    try {
      // Both, in either order: the model loads while the server starts.
      await nexxi.waitForOutput("Listening on", 50_000)
      await nexxi.waitForOutput("tiny-llama.gguf loaded", 50_000)
      const ready = await fetch(nexxi.url + "/ready")
      expect(ready.status).toBe(200)
      const reply = await fetch(nexxi.url + "/v1/chat", {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": TEST_API_KEY },
        body: JSON.stringify({ message: "Hello" })
      })
      expect(reply.status).toBe(200)
      expect(await reply.json()).toMatchObject({ model: "tiny-llama" })
    } finally {
      nexxi.child.kill("SIGTERM")
      await nexxi.exited
    }
  }, 60_000)
})
