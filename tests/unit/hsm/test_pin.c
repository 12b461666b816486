#include "hsm_test.h"
