/* Placeholder main, replaced by the CLI. */
#include "base/base.h"
int main(void)
{
    return 0;
}
