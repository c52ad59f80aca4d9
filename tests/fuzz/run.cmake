# Runs one fuzz target for RUNS inputs from seed 1, starting from the committed SEEDS in a
# fresh scratch corpus WORK, so that the run is the same every time.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
execute_process(COMMAND ${FUZZER} -seed=1 -runs=${RUNS} -max_len=4096 -rss_limit_mb=4096
                        -artifact_prefix=${ARTIFACTS} ${WORK} ${SEEDS}
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "${FUZZER} found a failure (exit ${rc}); the input is in ${ARTIFACTS}")
endif()
