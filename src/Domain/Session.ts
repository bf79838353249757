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
