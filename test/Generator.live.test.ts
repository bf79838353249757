/** Which backend serves, from configuration, and the Hugging Face hosted mode called as Hugging Face expects. */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Redacted } from "effect"
import { AppConfig } from "../src/AppConfig.js"
import { Generator } from "../src/Generator.js"
import { makeHuggingFaceGenerator } from "../src/Generator/HuggingFace.js"
import { GeneratorLive } from "../src/Generator/Live.js"
import { testConfig } from "./support/server.js"
import { startTgi, testResilience } from "./support/tgi.js"

const backendWith = (env: Record<string, string>) =>
  Effect.gen(function* () {
    const generator = yield* Generator
    return (yield* generator.readiness).kind
  }).pipe(Effect.provide(GeneratorLive.pipe(Layer.provide(AppConfig.Default), Layer.provide(testConfig(env)))))

describe("choice of backend", () => {
  it.scopedLive("GENERATOR wins; else TGI_URL means tgi, HF_TOKEN means hf, nothing means echo", () =>
    Effect.gen(function* () {
      const tgi = yield* startTgi()
      expect(yield* backendWith({})).toBe("echo")
      expect(yield* backendWith({ TGI_URL: tgi.url })).toBe("tgi")
      expect(yield* backendWith({ HF_TOKEN: "hf_test" })).toBe("hf")
      expect(yield* backendWith({ TGI_URL: tgi.url, HF_TOKEN: "hf_test" })).toBe("tgi")
      expect(yield* backendWith({ GENERATOR: "echo", TGI_URL: tgi.url })).toBe("echo")
      expect(yield* backendWith({ GENERATOR: "hf", HF_TOKEN: "hf_test", TGI_URL: tgi.url })).toBe("hf")
    })
  )

  it.scopedLive("a chosen backend without its setting stops start-up with a clear message", () =>
    Effect.gen(function* () {
      for (const [backend, variable] of [
        ["tgi", "TGI_URL"],
        ["hf", "HF_TOKEN"]
      ]) {
        const exit = yield* Effect.exit(backendWith({ GENERATOR: backend! }))
        expect(Exit.isFailure(exit)).toBe(true)
        expect(JSON.stringify(exit)).toContain(`${variable} is required when GENERATOR=${backend}`)
      }
    })
  )
})

describe("Hugging Face hosted mode", () => {
  it.scopedLive(
    "calls the inference router's chat completions with the token and the model, and streams the reply",
    () =>
      Effect.gen(function* () {
        // Hugging Face cannot be reached from here: its address is rewritten to the local TGI-compatible server.
        const local = yield* startTgi({ reply: "Hosted hello" })
        const seen: Array<string> = []
        const redirect: typeof fetch = (input, init) => {
          const url = String(input instanceof Request ? input.url : input)
          seen.push(url)
          return fetch(url.replace(/^https:\/\/[^/]+/, local.url), init)
        }
        const generator = yield* makeHuggingFaceGenerator({
          token: Redacted.make("hf_secret_token"),
          model: "mistralai/Mistral-7B-Instruct-v0.3",
          resilience: testResilience,
          fetch: redirect
        })
        const generation = yield* generator.generate({ messages: [{ role: "user", content: "Hi" }], maxNewTokens: 16 })
        expect(generation.text).toBe("Hosted hello")
        expect(seen).toEqual(["https://router.huggingface.co/v1/chat/completions"])
        const request = local.requests.find((r) => r.path === "/v1/chat/completions")!
        expect(request.headers.authorization).toBe("Bearer hf_secret_token")
        expect(request.body).toMatchObject({
          model: "mistralai/Mistral-7B-Instruct-v0.3",
          stream: true,
          max_tokens: 16
        })
        expect((yield* generator.info).modelId).toBe("mistralai/Mistral-7B-Instruct-v0.3")
      })
  )
})
