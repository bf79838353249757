import { Schema } from "effect"
import { SafeText } from "./Text.js"

/** A conversation's id: a UUID, chosen by Nexxi (v4) when the client does not send one. */
export const SessionId = Schema.UUID.pipe(Schema.brand("SessionId")).annotations({
  identifier: "SessionId",
  description: "A conversation id (UUID)"
})
export type SessionId = typeof SessionId.Type

export const Role = Schema.Literal("system", "user", "assistant")
export type Role = typeof Role.Type

/** One message of a conversation as Nexxi keeps it. */
export class ChatMessage extends Schema.Class<ChatMessage>("ChatMessage")({
  role: Role,
  content: SafeText,
  created_at: Schema.DateTimeUtc,
  /** True for an assistant reply that was cut short (client gone, shutdown, model failure). */
  interrupted: Schema.optionalWith(Schema.Boolean, { default: () => false })
}) {}

/** A message as the session store keeps it: with its length in the model's tokens, counted once when it is saved. */
export class SessionMessage extends ChatMessage.extend<SessionMessage>("SessionMessage")({
  tokens: Schema.NonNegativeInt.annotations({
    description: "The message's length in the model's tokens (Mistral-7B-Instruct-v0.3), without chat-template tokens"
  })
}) {}

/** One exchange: the user's message and the reply to it. Sessions keep and drop whole turns, never half of one. */
export class Turn extends Schema.Class<Turn>("Turn")({
  user: SessionMessage,
  assistant: SessionMessage
}) {}
