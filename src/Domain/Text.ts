import { Schema } from "effect"

/**
 * Text that can be stored, logged and sent to a model without surprises: no NUL characters (PostgreSQL rejects
 * them in `text` columns) and no unpaired UTF-16 surrogates (they cannot be encoded as UTF-8).
 */
export const SafeText = Schema.String.pipe(
  Schema.filter((text) => !text.includes("\u0000") || "must not contain NUL characters", {
    identifier: "NoNul"
  }),
  Schema.filter((text) => text.isWellFormed() || "must not contain unpaired UTF-16 surrogates", {
    identifier: "WellFormedUnicode"
  })
)

/** A chat message from a user: safe text that is not empty or only white space. */
export const MessageText = SafeText.pipe(
  Schema.filter((text) => text.trim().length > 0 || "must not be empty or blank", { identifier: "NonBlank" })
).annotations({ identifier: "MessageText", description: "The user's message (not blank)" })
