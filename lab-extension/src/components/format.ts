// Small text helpers the panels and their dialogs share.

/** Uptime as a person reads it: 42s, 5m 3s, 2h 10m, 3d 4h. */
export function formatUptime(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** An error as the one line a dialog shows. */
export const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));
