"""How much CPU the machine gives right now: the same pure-Python loop in 1 process, then in 2 at once
(seconds per process).  On two idle cores both runs take the same time; twice as long means one core's worth.
Usage: python cpu_check.py"""
import time
from multiprocessing import Pool


def spin(_):
    t = time.perf_counter()
    x = 0
    for i in range(20_000_000):
        x += i
    return time.perf_counter() - t


if __name__ == "__main__":
    for n in (1, 2):
        with Pool(n) as p:
            print(f"{n} process(es): {', '.join(f'{v:.2f} s' for v in p.map(spin, range(n)))}")
