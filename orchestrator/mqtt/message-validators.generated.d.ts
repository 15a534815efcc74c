// Types of the generated validators (message-validators.generated.js, scripts/gen-validators.ts).
import type { MessageKind, MessageTypes } from './messages.ts';

/** An ajv validation function: true when the value matches; otherwise `errors` says where and why. */
export interface ValidateFunction<T> {
  (value: unknown): value is T;
  errors?: Array<{ instancePath: string; message?: string }> | null;
}

export declare const validators: { [K in MessageKind]: ValidateFunction<MessageTypes[K]> };
