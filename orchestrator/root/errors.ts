// Errors that carry their HTTP answer. Thrown by root's domain code, turned into JSON by the server's
// error handler: {error, errors: [{path, message}]}.
import { AddressTaken } from './addresses.ts';
import { StoreConflict, StoreUnavailable } from './store.ts';
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

/**
 * What the store's own errors mean to a client: a value taken by a concurrent request is a
 * conflict; a database that cannot be reached makes root unavailable for now (the client retries,
 * or another replica answers). Undefined for any other error.
 */
export function storeErrorStatus(err: unknown): { status: number; message: string } | undefined {
  if (err instanceof AddressTaken) return { status: 409, message: `${err.message} (by a request that came first)` };
  if (err instanceof StoreConflict) return { status: 409, message: 'a concurrent request changed the same objects first; read them again' };
  if (err instanceof StoreUnavailable) return { status: 503, message: `root's database is unavailable: ${err.message}; nothing was changed, try again shortly` };
  return undefined;
}
