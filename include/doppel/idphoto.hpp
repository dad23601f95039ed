// The idphoto layer's public entry points: document photos that pass the rules.
#pragma once
#include "doppel/idphoto/id_photo_check.hpp"  // the checks, each with pass and a message
#include "doppel/idphoto/id_photo_maker.hpp"  // crop, scale, recolour into a compliant photo
#include "doppel/idphoto/id_photo_spec.hpp"   // the document specifications (built in)
#include "doppel/idphoto/person_matte.hpp"    // the person's matte (GrabCut + guided filter)
#include "doppel/idphoto/print_sheet.hpp"     // print sheets and their PDF
