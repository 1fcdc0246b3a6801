import numpy as np

from conceptkd_core.students.groups import GROUPS, decision_groups


def test_four_groups_partition_the_rows_and_sort_by_gap():
    rng = np.random.default_rng(0)
    teacher, student = rng.random(200), rng.random(200)
    rows = np.arange(0, 200, 2)
    groups = decision_groups(teacher, student, rows)
    assert list(groups) == list(GROUPS)
    together = np.concatenate(list(groups.values()))
    assert sorted(together) == sorted(rows)
    for name, members in groups.items():
        t, s = teacher[members] > 0.5, student[members] > 0.5
        expected = {
            "both_yes": (True, True),
            "teacher_only": (True, False),
            "student_only": (False, True),
            "both_no": (False, False),
        }[name]
        assert (t == expected[0]).all() and (s == expected[1]).all()
        gaps = np.abs(teacher[members] - student[members])
        assert (np.diff(gaps) <= 0).all()
