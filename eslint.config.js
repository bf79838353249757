import js from "@eslint/js"
import prettier from "eslint-config-prettier"
import tseslint from "typescript-eslint"

export default tseslint.config(
  { ignores: ["dist/", "coverage/", "node_modules/", "data/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      // Effect services declare their shape through interfaces merged with classes.
      "@typescript-eslint/no-unsafe-declaration-merging": "off",
      "@typescript-eslint/no-empty-object-type": "off"
    }
  },
  {
    // The web chat's browser modules (served as they are, no build step).
    files: ["src/Web/static/**/*.js"],
    languageOptions: {
      globals: Object.fromEntries(
        [
          "AbortController",
          "DOMException",
          "TextDecoderStream",
          "URLSearchParams",
          "console",
          "document",
          "fetch",
          "navigator",
          "requestAnimationFrame",
          "sessionStorage",
          "setTimeout",
          "window"
        ].map((name) => [name, "readonly"])
      )
    }
  },
  {
    // Tests read JSON bodies of every shape.
    files: ["test/**/*.ts"],
    rules: { "@typescript-eslint/no-explicit-any": "off" }
  },
  prettier
)
