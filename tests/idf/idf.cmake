# The ESP-IDF component as the IDF Component Manager copies it (a `git:`
# dependency on this repository): the copy must hold every source and
# include folder the component registers, and with IDF_PATH set in the
# environment it is compiled from there (check/esp-idf-check.sh).
find_package(Python3 REQUIRED COMPONENTS Interpreter)
add_test(NAME idf_component_copy
         COMMAND Python3::Interpreter ${CMAKE_CURRENT_LIST_DIR}/test_component_copy.py
                 ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/idf_component_copy
                 ${CMAKE_COMMAND})
set_tests_properties(idf_component_copy PROPERTIES LABELS unit SKIP_RETURN_CODE 77 TIMEOUT 600)
