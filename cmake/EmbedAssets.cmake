# siesta_embed_assets(TARGET FUNCTION NAME FILES f1 f2 ...): compiles the given files (paths
# relative to the current source dir) into TARGET as a generated .cpp defining
#   const siesta::EmbeddedAsset* NAME(std::string_view file_name);
# (siesta/core/embedded_asset.h). The files are the source; the .cpp is rebuilt when they change.
# Each file becomes a raw string literal, so the page can be read in the binary and no tool
# beyond CMake is needed.
set(SIESTA_EMBED_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/embed_assets_script.cmake)
function(siesta_embed_assets target)
  cmake_parse_arguments(ARG "" "FUNCTION" "FILES" ${ARGN})
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${ARG_FUNCTION}.cpp)
  set(abs_files)
  foreach(f ${ARG_FILES})
    list(APPEND abs_files ${CMAKE_CURRENT_SOURCE_DIR}/${f})
  endforeach()
  string(REPLACE ";" "|" joined "${abs_files}")
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DFUNCTION=${ARG_FUNCTION} "-DFILES=${joined}"
            -P ${SIESTA_EMBED_SCRIPT}
    DEPENDS ${abs_files} ${SIESTA_EMBED_SCRIPT}
    COMMENT "Embedding ${ARG_FUNCTION}: ${ARG_FILES}"
    VERBATIM)
  target_sources(${target} PRIVATE ${out})
endfunction()
