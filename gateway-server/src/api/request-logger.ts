// Each request's logger (req.log) made only when something logs: Fastify gives every request a
// child of the gateway's logger bound to its request id, but a read at the default level logs
// nothing (accessLogLevel), so building the child (pino copies and serialises its bindings) was
// work for nothing on nearly every request. The child is built on the first line and then used as is.
import type { FastifyBaseLogger } from 'fastify';
import type { Bindings, ChildLoggerOptions } from 'fastify/types/logger.js';

const METHODS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

class LazyChild {
  #real: FastifyBaseLogger | undefined;

  constructor(
    private readonly parent: FastifyBaseLogger,
    private readonly childBindings: Bindings,
  ) {}

  /** The request's pino child, built on first use. */
  get real(): FastifyBaseLogger {
    return (this.#real ??= this.parent.child(this.childBindings));
  }

  /** The child's level: its parent's until the child exists (pino's children inherit it). */
  get level(): string {
    return this.#real ? this.#real.level : this.parent.level;
  }

  set level(level: string) {
    this.real.level = level;
  }

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.real.child(bindings, options);
  }
}
for (const m of METHODS) {
  Object.defineProperty(LazyChild.prototype, m, {
    value: function (this: LazyChild, ...args: unknown[]) {
      return (this.real[m] as (...a: unknown[]) => void)(...args);
    },
  });
}

/** Fastify's childLoggerFactory: a lazy child, or pino's own when the route sets logger options. */
export function lazyChildLogger(logger: FastifyBaseLogger, bindings: Bindings, opts: ChildLoggerOptions): FastifyBaseLogger {
  for (const _ in opts) return logger.child(bindings, opts);
  return new LazyChild(logger, bindings) as unknown as FastifyBaseLogger;
}
