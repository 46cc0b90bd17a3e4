# The ESP-IDF component as the IDF Component Manager copies it (a `git:`
# dependency on this repository): the copy must hold every source and
# include folder the component registers, and with IDF_PATH set in the
# environment it is compiled from there (check/esp-idf-check.sh). Python 3
# runs the manager's own file filter (pathlib globs); without it the test
# is still registered, and fails saying so.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME idf_component_copy
           COMMAND Python3::Interpreter ${CMAKE_CURRENT_LIST_DIR}/test_component_copy.py
                   ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/idf_component_copy
                   ${CMAKE_COMMAND})
else()
  add_test(NAME idf_component_copy
           COMMAND sh -c "echo 'idf_component_copy: python3 not found (apt-get install python3)' >&2; exit 1")
endif()
set_tests_properties(idf_component_copy PROPERTIES LABELS unit SKIP_RETURN_CODE 77 TIMEOUT 600)
