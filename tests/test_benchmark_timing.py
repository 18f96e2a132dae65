"""benchmarks.timing.interleaved_medians: who is called when, and which calls are timed."""
import itertools

from benchmarks.timing import interleaved_medians


def test_each_timed_call_follows_a_settle_call_of_the_same_function():
    log, ticks = [], itertools.count()

    def clock():  # one tick per clock read: a timed call lasts exactly the ticks it reads
        return next(ticks)

    def maker(name, cost):
        def fn():
            log.append(name)
            for _ in range(cost):
                clock()
        return fn

    medians = interleaved_medians([maker("a", 3), maker("b", 5)], repeat=2, warmup=1,
                                  clock=clock)
    assert log == ["a", "b", "a", "a", "b", "b", "a", "a", "b", "b"]
    assert medians == [4, 6]  # the function's own clock reads plus the end read


def test_settle_zero_alternates_strictly():
    log = []
    interleaved_medians([lambda: log.append("a"), lambda: log.append("b")], repeat=2,
                        warmup=0, settle=0)
    assert log == ["a", "b", "a", "b"]
