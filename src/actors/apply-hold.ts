/**
 * A replica held for compare or repair applies nothing past `cap`: its repository then stays at
 * one LSN long enough to open a read there (compare) or to write the master's rows read at that
 * LSN (repair). Fetching goes on; only applying waits. One holder at a time, and a holder that
 * stops asking (a compare killed midway) loses the hold after `ttlMs`.
 */
export class ApplyHold {
  private holder: string | null = null;
  private cap = Infinity;
  private until = 0;

  constructor(
    private readonly ttlMs: number,
    /** Wakes the replica's apply when the cap rises. */
    private readonly kick: () => void,
    /** Told when a hold ends, and when a holder lost it by not asking in time. */
    private readonly released: (holder: string) => void = () => {},
    private readonly expired: (holder: string) => void = () => {},
  ) {}

  /** The highest LSN the replica may apply now. */
  limit(): number {
    if (this.holder !== null && Date.now() > this.until) {
      const holder = this.holder;
      this.release(holder);
      this.expired(holder);
    }
    return this.cap;
  }

  /** Who holds it now (an expired hold is nobody's). */
  heldBy(): string | null {
    this.limit();
    return this.holder;
  }

  take(holder: string, cap: number): void {
    this.holder = holder;
    this.cap = cap;
    this.touch();
  }

  raise(cap: number): void {
    this.cap = cap;
    this.touch();
    this.kick();
  }

  touch(): void {
    this.until = Date.now() + this.ttlMs;
  }

  /** Lets go if `holder` holds it; with no holder, whoever holds it (a promotion applies everything). */
  release(holder?: string): void {
    if (this.holder === null || (holder !== undefined && this.holder !== holder)) return;
    this.released(this.holder);
    this.holder = null;
    this.cap = Infinity;
    this.kick();
  }
}
