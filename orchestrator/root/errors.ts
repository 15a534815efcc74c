// Errors that carry their HTTP answer. Thrown by root's domain code, turned into JSON by the server's
// error handler: {error, errors: [{path, message}]}.
import type { FieldError } from '../descriptor/types.ts';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors: FieldError[] = [],
  ) {
    super(message);
  }
}

export const notFound = (what: string) => new ApiError(404, `${what} not found`);
export const forbidden = (what: string) => new ApiError(403, `${what} belongs to another user`);
export const conflict = (message: string, path = '') => new ApiError(409, message, [{ path, message }]);
export const invalid = (status: 400 | 422, message: string, errors: FieldError[]) => new ApiError(status, message, errors);
