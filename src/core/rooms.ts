/**
 * Room membership: who is in a room, by connection for delivery and by user for
 * `user_list` (each user once, however many connections it has there).
 */
import type { Member } from './types';

/** A user with more than one connection in a room. */
class UserEntry {
  constructor(
    readonly username: string,
    public count: number,
  ) {}
}

/** One room of this process. */
export class Room<M extends Member = Member> {
  /** Connections in the room, in join order. */
  readonly members = new Set<M>();
  /**
   * Users by id, in the order they first joined: the member itself while the user has one
   * connection here (the common case, no object per member), a {@link UserEntry} with a
   * count from the second on.
   */
  private readonly users = new Map<string, M | UserEntry>();

  constructor(
    /** The room name. */
    readonly name: string,
  ) {}

  /** Add a member; returns false when it was already in. */
  add(member: M): boolean {
    if (this.members.has(member)) return false;
    this.members.add(member);
    const u = this.users.get(member.userId);
    if (u === undefined) this.users.set(member.userId, member);
    else if (u instanceof UserEntry) u.count++;
    else this.users.set(member.userId, new UserEntry(u.username, 2));
    return true;
  }

  /** Remove a member; returns false when it was not in. */
  remove(member: M): boolean {
    if (!this.members.delete(member)) return false;
    const u = this.users.get(member.userId);
    if (u === undefined) return true;
    if (!(u instanceof UserEntry) || --u.count === 0) this.users.delete(member.userId);
    return true;
  }

  /** Usernames of the room's users, each user once, in the order they first joined. */
  usernames(): string[] {
    const out: string[] = [];
    for (const u of this.users.values()) out.push(u.username);
    return out;
  }

  /** Number of member connections. */
  get size(): number {
    return this.members.size;
  }
}

/**
 * The rooms of one process; empty rooms are removed. It also counts rooms by their
 * number of members as members come and go, so statistics never walk every room.
 */
export class RoomRegistry<M extends Member = Member> {
  private readonly rooms = new Map<string, Room<M>>();
  /** Rooms by member count: `sizes.get(n)` rooms have exactly n members (n ≥ 1). */
  private readonly sizes = new Map<number, number>();

  /** The room called `name`, if it has members. */
  get(name: string): Room<M> | undefined {
    return this.rooms.get(name);
  }

  /** Add `member` to `name`, creating the room. Returns the room. */
  join(name: string, member: M): Room<M> {
    let room = this.rooms.get(name);
    if (room === undefined) {
      room = new Room<M>(name);
      this.rooms.set(name, room);
    }
    if (room.add(member)) this.resized(room.size - 1, room.size);
    return room;
  }

  /** Remove `member` from `name`, dropping the room once empty. */
  leave(name: string, member: M): void {
    const room = this.rooms.get(name);
    if (room === undefined || !room.remove(member)) return;
    this.resized(room.size + 1, room.size);
    if (room.size === 0) this.rooms.delete(name);
  }

  private resized(from: number, to: number): void {
    const sizes = this.sizes;
    if (from > 0) {
      const n = (sizes.get(from) as number) - 1;
      if (n === 0) sizes.delete(from);
      else sizes.set(from, n);
    }
    if (to > 0) sizes.set(to, (sizes.get(to) ?? 0) + 1);
  }

  /** `[members, rooms]` pairs in ascending order of members: how many rooms have each size. */
  sizeCounts(): [members: number, rooms: number][] {
    return [...this.sizes].sort((a, b) => a[0] - b[0]);
  }

  /**
   * The `limit` rooms with the most members, most first (ties by name). One pass over
   * the rooms, keeping the best `limit` in a sorted array.
   */
  largest(limit: number): Room<M>[] {
    const best: Room<M>[] = [];
    if (limit <= 0) return best;
    const before = (a: Room<M>, b: Room<M>) => a.size > b.size || (a.size === b.size && a.name < b.name);
    for (const room of this.rooms.values()) {
      if (best.length === limit && !before(room, best[limit - 1] as Room<M>)) continue;
      let i = best.length === limit ? limit - 1 : best.length;
      while (i > 0 && before(room, best[i - 1] as Room<M>)) {
        best[i] = best[i - 1] as Room<M>;
        i--;
      }
      best[i] = room;
    }
    return best;
  }

  /** Names of rooms with members. */
  names(): string[] {
    return [...this.rooms.keys()];
  }

  /** All rooms with members. */
  values(): IterableIterator<Room<M>> {
    return this.rooms.values();
  }

  /** Number of rooms with members. */
  get size(): number {
    return this.rooms.size;
  }
}
