# Warnings and sanitizers hang off INTERFACE targets that every siesta target links PRIVATE.

add_library(siesta_warnings INTERFACE)
add_library(siesta::warnings ALIAS siesta_warnings)
target_compile_options(siesta_warnings INTERFACE
  -Wall -Wextra -Wshadow -Wconversion -Wsign-conversion -Wpedantic -Wnon-virtual-dtor
  -Wold-style-cast -Woverloaded-virtual)
if(SIESTA_WERROR)
  target_compile_options(siesta_warnings INTERFACE -Werror)
endif()

add_library(siesta_sanitizers INTERFACE)
add_library(siesta::sanitizers ALIAS siesta_sanitizers)
if(SIESTA_SANITIZE AND SIESTA_TSAN)
  message(FATAL_ERROR "SIESTA_SANITIZE (ASan) and SIESTA_TSAN cannot be combined")
endif()
if(SIESTA_TSAN)
  # ThreadSanitizer: data races in the monitor, controller and proxy.
  # -Wno-tsan: GCC warns that TSan does not model the atomic_thread_fence Boost.Asio uses.
  target_compile_options(siesta_sanitizers INTERFACE -fsanitize=thread -fno-omit-frame-pointer
                                                     -Wno-tsan)
  target_link_options(siesta_sanitizers INTERFACE -fsanitize=thread)
endif()
if(SIESTA_FUZZ)
  # libFuzzer (clang): every library gets coverage instrumentation; fuzz/ links the driver.
  target_compile_options(siesta_sanitizers INTERFACE -fsanitize=fuzzer-no-link)
endif()
if(SIESTA_SANITIZE)
  # ASan + UBSan; UBSan findings abort so that ctest sees them as failures.
  target_compile_options(siesta_sanitizers INTERFACE
    -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(siesta_sanitizers INTERFACE -fsanitize=address,undefined)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    target_compile_options(siesta_sanitizers INTERFACE
      -fsanitize-ignorelist=${PROJECT_SOURCE_DIR}/cmake/ubsan-ignorelist.txt)
  endif()
endif()

# siesta_module(NAME DIR [DEPS...]) declares one library per module, with a siesta:: alias.
function(siesta_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(siesta_${name} STATIC ${ARG_SOURCES})
  add_library(siesta::${name} ALIAS siesta_${name})
  target_include_directories(siesta_${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include)
  target_link_libraries(siesta_${name}
    PUBLIC ${ARG_PUBLIC_DEPS}
    PRIVATE siesta::warnings siesta::sanitizers ${ARG_PRIVATE_DEPS})
  target_compile_features(siesta_${name} PUBLIC cxx_std_20)
endfunction()
