"""The parts of the class autograder (`tools/grade.py`, `./course grade`): the settings and results
(model), students' submissions read safely (submissions), one chapter run in the sandbox and scored
(chapter_run), and the tables and reports written from the results (reports)."""
