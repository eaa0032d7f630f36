/* The reference answer to the exercise new-hierarchy is a file,
 * tests/exercises/solutions/chest.hier; this points the check at it. */
const char *exercise_answer_path(void);

const char *exercise_answer_path(void)
{
    return "tests/exercises/solutions/chest.hier";
}
