// An error meant for the person at the terminal: one clear line, a chosen exit code.
export class UserError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message)
  }
}
