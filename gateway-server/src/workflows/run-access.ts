// Who may see a workflow run, and how many runs one user may have going.
import type { User } from '../auth/authenticator.js';
import { AppError } from '../errors.js';

/** Whether the user may see and act on the run: its owner or an admin (others get a 404, so ids do not leak). */
export function maySee(user: User, run: { username: string }): boolean {
  return run.username === user.name || user.admin;
}

/**
 * workflows.max_active_runs_per_user: one more active run of a user beyond it is a 429. Submissions
 * under way count with the user's active runs, so parallel POSTs cannot pass the cap together.
 */
export class RunCap {
  private readonly submitting = new Map<string, number>();

  constructor(
    private readonly max: number | null | undefined,
    /** The owner's unfinished runs the engine holds. */
    private readonly activeOf: (owner: string) => number,
  ) {}

  /** Refuses one more active run of `owner` (429) when the cap is reached. */
  check(owner: string): void {
    if (this.max == null) return;
    const n = (this.submitting.get(owner) ?? 0) + this.activeOf(owner);
    if (n >= this.max) {
      throw new AppError(
        429,
        'limit_workflow_runs',
        `User ${owner} has ${n} workflow run${n === 1 ? '' : 's'} going and may have ${this.max} at once (workflows.max_active_runs_per_user); wait for one to finish or cancel one`,
      );
    }
  }

  /** Checks, then counts a submission of `owner` as active while `submit` runs. */
  async admit<T>(owner: string, submit: () => Promise<T>): Promise<T> {
    this.check(owner);
    this.submitting.set(owner, (this.submitting.get(owner) ?? 0) + 1);
    try {
      return await submit();
    } finally {
      const left = (this.submitting.get(owner) ?? 1) - 1;
      if (left) this.submitting.set(owner, left);
      else this.submitting.delete(owner);
    }
  }
}
