// Contract errors: a gRPC status code and a sentence a person can act on.
import { status } from "@grpc/grpc-js";

export class NetError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

export function invalid(message: string): NetError {
  return new NetError(status.INVALID_ARGUMENT, message);
}

export function precondition(message: string): NetError {
  return new NetError(status.FAILED_PRECONDITION, message);
}
